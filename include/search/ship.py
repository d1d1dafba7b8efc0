"""Shipping PostgreSQL rows to Elasticsearch, exactly once.

* ``activity_logs`` -> ``{prefix}activity-logs-YYYY.MM``, ``performance_metrics`` -> ``{prefix}metrics-YYYY.MM``
  (UTC month of the row's time). Document id = row id; every action is a bulk **create**, so a document
  that is already there answers 409 and is counted as ``existing``: reruns and retries add nothing.
* A high-water mark per stream and namespace (``search_ship_state``) records the (time, id) of the last
  row Elasticsearch acknowledged; it moves forward batch by batch, each batch committed after its bulk
  request succeeded. A run reads from ``hwm_time - overlap`` (rows whose transaction committed after the
  previous run, with an earlier ``now()``, are picked up; the re-read ones are 409s).
* :func:`reconcile_stream` compares row counts per month with document counts per index and re-ships
  the months that differ (rows inserted with an old timestamp, e.g. a backfill). It is the safety net,
  run hourly by the DAG.
* Global patterns are shipped per completed round (``search_shipped_rounds``), create-only as well.

Outage: a connection error of Elasticsearch raises :class:`ServiceUnavailable` naming it; the high-water
mark stays at the last acknowledged batch, so the next run catches up exactly. The source documents are
built by PostgreSQL (``json_build_object``), so Python only frames the NDJSON body.

No delete-by-query, reindex, scripts or ingest pipelines are used (absent from the integ-test-zip server).
"""
from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import psycopg

from include.search.clients import ServiceUnavailable, check_es, describe_es  # noqa: F401 (re-export)
from include.search.indices import Namespace, apply_templates, templates_present

log = logging.getLogger("include.search.ship")

NIL_UUID = "00000000-0000-0000-0000-000000000000"
DEFAULT_BATCH = 5000
DEFAULT_OVERLAP = timedelta(minutes=10)


class ShipError(RuntimeError):
    """Elasticsearch rejected documents (mapping error, ...): the batch is not committed."""


class ShipBusy(RuntimeError):
    """Another shipper holds the stream's lock."""


@dataclass(frozen=True)
class Stream:
    name: str              # table name, also the stream name in search_ship_state
    time_col: str
    index_base: str
    doc_sql: str           # SQL expression: the document as JSON
    retention_key: str     # server_configs key with the retention in days
    retention_default: int


ACTIVITY_LOGS = Stream(
    "activity_logs", "created_at", "activity-logs",
    """json_build_object('id', id, 'user_id', user_id, 'store_id', store_id, 'action_type', action_type,
        'action_description', action_description, 'resource_type', resource_type, 'resource_id', resource_id,
        'ip_address', host(ip_address), 'user_agent', user_agent, 'created_at', created_at,
        'additional_data', additional_data)""",
    "retention_activity_logs_days", 365)

PERFORMANCE_METRICS = Stream(
    "performance_metrics", "recorded_at", "metrics",
    """json_build_object('id', id, 'metric_type', metric_type, 'metric_name', metric_name,
        'metric_value', metric_value, 'store_id', store_id, 'round_id', round_id, 'recorded_at', recorded_at,
        'metadata', metadata)""",
    "retention_performance_metrics_detail_days", 183)

STREAMS = {s.name: s for s in (ACTIVITY_LOGS, PERFORMANCE_METRICS)}

# global_patterns columns of the federated issue (confidence of a pattern), under the names they may
# carry; the first one present is used, absent ones are left out of the document
CONFIDENCE_COLUMNS = {
    "utility_std": ("utility_std", "utility_stddev", "utility_sd", "aggregated_utility_std", "utility_std_dev"),
    "utility_ci_low": ("utility_ci_low", "utility_ci_lower", "utility_lower", "ci_low", "ci_lower",
                       "utility_ci95_low", "utility_lower_95"),
    "utility_ci_high": ("utility_ci_high", "utility_ci_upper", "utility_upper", "ci_high", "ci_upper",
                        "utility_ci95_high", "utility_upper_95"),
    "confident": ("confident", "is_confident"),
    "pattern_rank": ("pattern_rank", "rank"),
}


@dataclass
class ShipResult:
    stream: str
    target: str
    created: int = 0
    existing: int = 0
    batches: int = 0
    hwm_time: datetime | None = None
    hwm_id: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["hwm_time"] = self.hwm_time.isoformat() if self.hwm_time else None
        return d


@dataclass
class ReconcileResult:
    stream: str
    target: str
    months_checked: int = 0
    months_repaired: list[str] = field(default_factory=list)
    repaired: int = 0
    extra_in_es: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------ bulk
def items_text(items) -> str:
    """The free-text form of pattern items: separators inside an item become spaces ("brie_cheese" ->
    "brie cheese"), so the standard analyzer (the integ-test-zip has no analysis-common) finds each word."""
    import re

    return " ".join(re.sub(r"[_\-./:|]+", " ", str(i)) for i in items)


def bulk_create(es, actions: list[tuple[str, str, str]], *, refresh: bool = False,
                max_retries: int = 3) -> tuple[int, int]:
    """Create documents ``(index, id, source_json)``; returns (created, existing).

    409 (document exists) counts as existing; 429/503 per item are retried with back-off; any other
    item error raises :class:`ShipError`; a connection failure raises :class:`ServiceUnavailable`.
    """
    import json

    from elasticsearch import ApiError, TransportError

    created = existing = 0
    pending = actions
    for attempt in range(max_retries + 1):
        body = "".join('{"create":{"_index":%s,"_id":%s}}\n%s\n' % (json.dumps(i), json.dumps(d), s)
                       for i, d, s in pending)
        try:
            resp = es.bulk(operations=body, refresh=refresh)
        except (TransportError, OSError) as e:
            raise ServiceUnavailable("Elasticsearch", describe_es(es),
                                     f"bulk request failed ({type(e).__name__}: {e})") from e
        except ApiError as e:
            if getattr(e, "status_code", None) in (429, 502, 503, 504) and attempt < max_retries:
                time.sleep(0.5 * 2 ** attempt)
                continue
            raise ServiceUnavailable("Elasticsearch", describe_es(es), f"bulk request rejected: {e}") from e
        retry, errors = [], []
        for action, item in zip(pending, resp["items"]):
            r = item.get("create") or next(iter(item.values()))
            status = r.get("status", 0)
            if status in (200, 201):
                created += 1
            elif status == 409:
                existing += 1
            elif status in (429, 503):
                retry.append(action)
            else:
                errors.append(f"{action[0]}/{action[1]}: {status} {r.get('error')}")
        if errors:
            raise ShipError(f"Elasticsearch rejected {len(errors)} document(s), first: {errors[0]}")
        if not retry:
            return created, existing
        pending = retry
        time.sleep(0.5 * 2 ** attempt)
    raise ServiceUnavailable("Elasticsearch", describe_es(es),
                             f"{len(pending)} document(s) still rejected with 429/503 after {max_retries} retries")


# ------------------------------------------------------------------------------------------ state
def _stream_key(stream: str, ns: Namespace) -> str:
    return f"{ns.target}/{stream}"


def _lock_key(key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"search_ship:{key}".encode()).digest()[:8], "big", signed=True)


class _AdvisoryLock:
    """Session-level advisory lock of one stream (two shippers of one stream never run at once)."""

    def __init__(self, conn: psycopg.Connection, key: str):
        self.conn, self.key, self.lock = conn, key, _lock_key(key)

    def __enter__(self):
        with self.conn.transaction():
            ok = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.lock,)).fetchone()[0]
        if not ok:
            raise ShipBusy(f"another shipper is running for {self.key}")
        return self

    def __exit__(self, *exc):
        if not self.conn.closed:
            try:
                if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    self.conn.rollback()
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.lock,))
                if not self.conn.autocommit:
                    self.conn.commit()
            except psycopg.Error:
                pass


def get_state(conn: psycopg.Connection, stream: str, ns: Namespace) -> dict | None:
    with conn.transaction():
        cur = conn.execute("SELECT * FROM search_ship_state WHERE stream = %s", (_stream_key(stream, ns),))
        row = cur.fetchone()
        return dict(zip([d.name for d in cur.description], row)) if row else None


def _ensure_state(conn: psycopg.Connection, key: str) -> tuple[datetime | None, str | None]:
    with conn.transaction():
        conn.execute("INSERT INTO search_ship_state (stream) VALUES (%s) ON CONFLICT DO NOTHING", (key,))
        conn.execute("UPDATE search_ship_state SET last_run_started_at = now(), runs = runs + 1 WHERE stream = %s",
                     (key,))
        t, i = conn.execute("SELECT hwm_time, hwm_id FROM search_ship_state WHERE stream = %s", (key,)).fetchone()
    return t, (str(i) if i else None)


def record_error(conn: psycopg.Connection, stream: str, ns: Namespace, error: BaseException) -> None:
    """Store the failure on the stream's state row (best effort: PostgreSQL may be the failing service)."""
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        with conn.transaction():
            key = _stream_key(stream, ns)
            conn.execute("INSERT INTO search_ship_state (stream) VALUES (%s) ON CONFLICT DO NOTHING", (key,))
            conn.execute("UPDATE search_ship_state SET last_error = %s, last_error_at = now(), updated_at = now()"
                         " WHERE stream = %s", (f"{type(error).__name__}: {error}"[:2000], key))
    except psycopg.Error:
        log.warning("could not record the error of %s in search_ship_state", stream)


def retention_days(conn: psycopg.Connection, stream: Stream) -> int:
    from include.db.configs import get_config

    with conn.transaction():
        return int(get_config(conn, stream.retention_key, stream.retention_default))


# ------------------------------------------------------------------------------------------ streams
def _select(stream: Stream, first: bool, until: bool) -> str:
    t = stream.time_col
    key = f"{t} >= %(lo)s" if first else f"({t}, id) > (%(t)s, %(i)s::uuid)"
    upper = f" AND {t} < %(hi)s" if until else ""
    # ORDER BY the uuid column (not the text alias): the same order as the row comparison above
    return (f"SELECT id::text AS doc_id, {t}, to_char({t} AT TIME ZONE 'UTC', 'YYYY.MM'), ({stream.doc_sql})::text"
            f" FROM {stream.name} WHERE {key} AND {t} <= %(now)s{upper} ORDER BY {t}, {stream.name}.id LIMIT %(n)s")


def _scan(conn: psycopg.Connection, stream: Stream, lo: datetime, now: datetime, batch_size: int,
          hi: datetime | None = None):
    """Batches of (id, time, month, source_json) with time in [lo, min(hi, now)], in (time, id) order."""
    last = None
    while True:
        params = {"lo": lo, "now": now, "hi": hi, "n": batch_size}
        if last is not None:
            params.update(t=last[1], i=last[0])
        with conn.transaction():
            rows = conn.execute(_select(stream, last is None, hi is not None), params).fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1]
        if len(rows) < batch_size:
            return


def ship_stream(conn: psycopg.Connection, es, stream: Stream | str, *, ns: Namespace = Namespace(),
                batch_size: int = DEFAULT_BATCH, overlap: timedelta = DEFAULT_OVERLAP,
                progress: Callable[[dict], None] | None = None, max_batches: int | None = None,
                now: datetime | None = None) -> ShipResult:
    """Ship the rows of ``stream`` added since the high-water mark; see the module docstring."""
    stream = STREAMS[stream] if isinstance(stream, str) else stream
    key = _stream_key(stream.name, ns)
    t0 = time.monotonic()
    res = ShipResult(stream.name, ns.target)
    with _AdvisoryLock(conn, key):
        hwm_t, hwm_i = _ensure_state(conn, key)
        res.hwm_time, res.hwm_id = hwm_t, hwm_i
        with conn.transaction():
            now = now or conn.execute("SELECT now()").fetchone()[0]
        cutoff = now - timedelta(days=retention_days(conn, stream))
        lo = cutoff if hwm_t is None else max(hwm_t - overlap, cutoff)
        batches = _scan(conn, stream, lo, now, batch_size)
        with ThreadPoolExecutor(max_workers=1) as reader:
            rows = next(batches, None)
            while rows:
                # PostgreSQL reads the next batch while Elasticsearch indexes this one; the connection is
                # used by one thread at a time (the state update waits for the read)
                ahead = reader.submit(next, batches, None)
                actions = [(ns.monthly(stream.index_base, month), rid, src) for rid, _t, month, src in rows]
                try:
                    c, e = bulk_create(es, actions)
                except BaseException:
                    wait([ahead])     # let the read finish before the connection is used again
                    raise
                nxt = ahead.result()
                hwm_t, hwm_i = _advance(conn, key, rows, hwm_t, hwm_i, c, e)
                res.created += c
                res.existing += e
                res.batches += 1
                res.hwm_time, res.hwm_id = hwm_t, hwm_i
                if progress:
                    progress({"phase": "shipping", **res.as_dict()})
                if max_batches is not None and res.batches >= max_batches:
                    break
                rows = nxt
        with conn.transaction():
            conn.execute("UPDATE search_ship_state SET last_success_at = now(), last_error = NULL, updated_at = now()"
                         " WHERE stream = %s", (key,))
    res.seconds = round(time.monotonic() - t0, 3)
    log.info("%s -> %s: %d created, %d already indexed, %d batches, high-water mark %s/%s", stream.name,
             ns.prefix or "(no prefix)", res.created, res.existing, res.batches, res.hwm_time, res.hwm_id)
    return res


def _advance(conn, key: str, rows, hwm_t, hwm_i, created: int, existing: int):
    """Commit the high-water mark after an acknowledged batch (it never moves back inside the overlap)."""
    last_id, last_t = rows[-1][0], rows[-1][1]
    if hwm_t is not None and (last_t, last_id) < (hwm_t, hwm_i or NIL_UUID):
        last_t, last_id = hwm_t, hwm_i   # still inside the overlap
    with conn.transaction():
        conn.execute(
            """UPDATE search_ship_state SET hwm_time = %s, hwm_id = %s, docs_created = docs_created + %s,
                      docs_existing = docs_existing + %s, updated_at = now() WHERE stream = %s""",
            (last_t, last_id, created, existing, key))
    return last_t, last_id


def _pg_month_counts(conn, stream: Stream, cutoff: datetime, now: datetime) -> dict[str, int]:
    t = stream.time_col
    with conn.transaction():
        rows = conn.execute(
            f"SELECT to_char({t} AT TIME ZONE 'UTC', 'YYYY.MM'), count(*) FROM {stream.name}"
            f" WHERE {t} >= %s AND {t} <= %s GROUP BY 1", (cutoff, now)).fetchall()
    return {m: n for m, n in rows}


def _es_month_counts(es, stream: Stream, ns: Namespace, cutoff: datetime, now: datetime) -> dict[str, int]:
    from include.search.indices import month_of

    pattern = ns.monthly(stream.index_base, "*")
    es.indices.refresh(index=pattern, ignore_unavailable=True, allow_no_indices=True)
    resp = es.search(index=pattern, size=0, ignore_unavailable=True, allow_no_indices=True,
                     query={"range": {stream.time_col: {"gte": cutoff.isoformat(), "lte": now.isoformat()}}},
                     aggs={"idx": {"terms": {"field": "_index", "size": 1000}}})
    out = {}
    for b in resp.get("aggregations", {}).get("idx", {}).get("buckets", []):
        m = month_of(b["key"])
        if m:
            out[m.strftime("%Y.%m")] = b["doc_count"]
    return out


def reconcile_stream(conn: psycopg.Connection, es, stream: Stream | str, *, ns: Namespace = Namespace(),
                     batch_size: int = DEFAULT_BATCH, now: datetime | None = None) -> ReconcileResult:
    """Compare rows and documents per month (within retention, up to now) and re-ship the months where
    Elasticsearch has fewer (create-only: only the missing documents are added)."""
    from datetime import date

    from include.search.indices import _month_end

    stream = STREAMS[stream] if isinstance(stream, str) else stream
    key = _stream_key(stream.name, ns)
    res = ReconcileResult(stream.name, ns.target)
    with _AdvisoryLock(conn, key):
        with conn.transaction():
            now = now or conn.execute("SELECT now()").fetchone()[0]
        cutoff = now - timedelta(days=retention_days(conn, stream))
        pg = _pg_month_counts(conn, stream, cutoff, now)
        es_counts = _es_month_counts(es, stream, ns, cutoff, now)
        res.months_checked = len(set(pg) | set(es_counts))
        for month in sorted(set(pg) | set(es_counts)):
            n_pg, n_es = pg.get(month, 0), es_counts.get(month, 0)
            if n_es > n_pg:
                res.extra_in_es[month] = n_es - n_pg
            if n_pg <= n_es:
                continue
            y, m = map(int, month.split("."))
            start = datetime(y, m, 1, tzinfo=timezone.utc)
            lo, hi = max(start, cutoff), _month_end(date(y, m, 1))
            for rows in _scan(conn, stream, lo, now, batch_size, hi=hi):
                c, _e = bulk_create(es, [(ns.monthly(stream.index_base, mo), rid, src) for rid, _t, mo, src in rows])
                res.repaired += c
            res.months_repaired.append(month)
        with conn.transaction():
            conn.execute("INSERT INTO search_ship_state (stream, last_success_at) VALUES (%s, now())"
                         " ON CONFLICT (stream) DO UPDATE SET last_success_at = now(), updated_at = now()",
                         (f"{key}#reconcile",))
    if res.repaired or res.extra_in_es:
        log.warning("reconcile %s: %d documents re-shipped in %s; more documents than rows in %s", key,
                    res.repaired, res.months_repaired, res.extra_in_es)
    return res


def reconcile_due(conn: psycopg.Connection, stream: str, ns: Namespace, every: timedelta) -> bool:
    with conn.transaction():
        row = conn.execute("SELECT last_success_at > now() - %s FROM search_ship_state WHERE stream = %s",
                           (every, f"{_stream_key(stream, ns)}#reconcile")).fetchone()
    return not (row and row[0])


# ------------------------------------------------------------------------------------------ patterns
def _pattern_columns(conn: psycopg.Connection) -> dict[str, str]:
    with conn.transaction():
        cols = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'global_patterns'"
            " AND table_schema = current_schema()")}
    return {field_: next(c for c in names if c in cols)
            for field_, names in CONFIDENCE_COLUMNS.items() if any(c in cols for c in names)}


def ship_global_patterns(conn: psycopg.Connection, es, *, ns: Namespace = Namespace(),
                         batch_size: int = DEFAULT_BATCH, decode_items: bool = False,
                         progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Index the global patterns of every completed round not shipped yet to this namespace.

    ``decode_items``: index item names from ``global_patterns_decoded`` (keyed ids replaced by names
    where the key holders filled the dictionary); off by default, because whoever can search the index
    would then see the names.
    """
    key = _stream_key("global_patterns", ns)
    extra = _pattern_columns(conn)
    extra_sql = "".join(f", '{f}', g.{c}" for f, c in extra.items())
    source = "global_patterns_decoded" if decode_items else "global_patterns"
    shipped = []
    with _AdvisoryLock(conn, key):
        with conn.transaction():
            rounds = conn.execute(
                """SELECT r.id::text, r.round_number, r.completed_at, to_jsonb(r) ->> 'region_id'
                     FROM federated_rounds r
                    WHERE r.status = 'completed'
                      AND NOT EXISTS (SELECT FROM search_shipped_rounds s WHERE s.target = %s AND s.round_id = r.id)
                    ORDER BY r.round_number""", (ns.target,)).fetchall()
        for round_id, number, completed_at, region_id in rounds:
            created = existing = 0
            last = NIL_UUID
            while True:
                with conn.transaction():
                    rows = conn.execute(
                        f"""SELECT g.id::text, g.pattern_items, json_build_object(
                                'id', g.id, 'round_id', g.round_id, 'round_number', %(num)s::int,
                                'round_completed_at', %(done)s::timestamptz, 'region_id', %(region)s::text,
                                'pattern_items', g.pattern_items,
                                'pattern_length', cardinality(g.pattern_items),
                                'aggregated_utility', g.aggregated_utility, 'global_support', g.global_support,
                                'contributing_stores', g.contributing_stores,
                                'client_coverage_percent', g.client_coverage_percent,
                                'created_at', g.created_at{extra_sql})::text
                              FROM {source} g
                             WHERE g.round_id = %(r)s AND g.id > %(last)s::uuid ORDER BY g.id LIMIT %(n)s""",
                        {"num": number, "done": completed_at, "region": region_id, "r": round_id, "last": last, "n": batch_size}
                    ).fetchall()
                if not rows:
                    break
                actions = []
                for pid, items, src in rows:
                    # add items_text to the JSON object text (PostgreSQL built the rest)
                    import json as _json

                    actions.append((ns.global_patterns, pid,
                                    src[:-1] + ', "items_text" : ' + _json.dumps(items_text(items)) + "}"))
                c, e = bulk_create(es, actions)
                created, existing = created + c, existing + e
                last = rows[-1][0]
                if len(rows) < batch_size:
                    break
            with conn.transaction():
                conn.execute("""INSERT INTO search_shipped_rounds (target, round_id, round_number, patterns_indexed)
                                VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                             (ns.target, round_id, number, created + existing))
            info = {"round_id": round_id, "round_number": number, "created": created, "existing": existing}
            shipped.append(info)
            if progress:
                progress({"phase": "global_patterns", **info})
            log.info("round %s (#%s): %d global patterns indexed, %d already there", round_id, number, created,
                     existing)
    return shipped


# ------------------------------------------------------------------------------------------ all
def ensure_templates(es, ns: Namespace) -> bool:
    """Apply the templates when one is missing; True if they were applied."""
    if templates_present(es, ns.prefix):
        return False
    apply_templates(es, ns.prefix)
    return True


def _named(e: Exception, es, redis) -> Exception:
    """A connection failure of Elasticsearch or Redis as :class:`ServiceUnavailable` naming the service."""
    import redis as redis_lib
    from elasticsearch import TransportError

    from include.search.clients import describe_redis

    if isinstance(e, TransportError):
        return ServiceUnavailable("Elasticsearch", describe_es(es), f"{type(e).__name__}: {e}")
    if isinstance(e, redis_lib.ConnectionError | redis_lib.TimeoutError):
        return ServiceUnavailable("Redis", describe_redis(redis), f"{type(e).__name__}: {e}")
    return e


def ship_all(conn: psycopg.Connection, es, *, ns: Namespace = Namespace(), redis=None,
             batch_size: int = DEFAULT_BATCH, overlap: timedelta = DEFAULT_OVERLAP,
             reconcile: str = "hourly", decode_items: bool = False, lock_ttl_s: int = 900,
             redis_ns: str = "platform", on_progress: Callable[[dict], None] | None = None) -> dict:
    """One shipping run: health checks (Elasticsearch, and Redis when given), templates, both streams,
    the rounds, and the reconciliation when due (``reconcile``: hourly | always | never).

    With ``redis`` the run holds the lock ``index_search:<target>`` and publishes its progress
    (include.search.live); a Redis outage then fails the run naming Redis.
    """
    from include.search import live

    check_es(es)
    progress = on_progress
    lock = None
    if redis is not None:
        from include.search.clients import check_redis

        check_redis(redis)
        lock = live.PlatformLock(redis, f"index_search:{ns.target}", ttl_s=lock_ttl_s, ns=redis_ns)
        lock.acquire(blocking_timeout=5)
        tracker = live.Progress(redis, "index_search", ns.target, ns=redis_ns)
        tracker.update(phase="started")

        def _publish(d: dict) -> None:
            tracker.update(**{k: v for k, v in d.items() if v is not None})
            lock.extend()
            if on_progress:
                on_progress(d)
        progress = _publish
    out: dict = {"target": ns.target}
    try:
        out["templates_applied"] = ensure_templates(es, ns)
        for s in (ACTIVITY_LOGS, PERFORMANCE_METRICS):
            try:
                out[s.name] = ship_stream(conn, es, s, ns=ns, batch_size=batch_size, overlap=overlap,
                                          progress=progress).as_dict()
                if reconcile == "always" or (reconcile == "hourly" and reconcile_due(conn, s.name, ns,
                                                                                      timedelta(hours=1))):
                    out[f"{s.name}_reconcile"] = reconcile_stream(conn, es, s, ns=ns, batch_size=batch_size).as_dict()
            except Exception as e:
                record_error(conn, s.name, ns, e)
                raise
        try:
            out["global_patterns"] = ship_global_patterns(conn, es, ns=ns, batch_size=batch_size,
                                                          decode_items=decode_items, progress=progress)
        except Exception as e:
            record_error(conn, "global_patterns", ns, e)
            raise
        es.indices.refresh(index=",".join(ns.all_patterns[:3]), ignore_unavailable=True, allow_no_indices=True)
        if redis is not None:
            tracker.update(phase="done", finished_at=datetime.now(timezone.utc).isoformat())
        return out
    except Exception as e:
        if redis is not None:
            try:
                tracker.update(phase="failed", error=f"{type(e).__name__}: {e}"[:500])
            except Exception:  # noqa: BLE001 - Redis may be the failing service
                pass
        named = _named(e, es, redis)
        if named is e:
            raise
        raise named from e
    finally:
        if lock is not None:
            lock.release()
