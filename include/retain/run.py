"""One retention run (spec 4.1) over every table, or its dry-run plan.

| table                | rule                                                     | how                                  |
|----------------------|----------------------------------------------------------|--------------------------------------|
| transactions         | 2 years in PostgreSQL, then archived and removed         | :func:`archive.archive_table`        |
| activity_logs        | 1 year, then compressed (Parquet zstd), archived, removed| archive; whole months: partition drop|
| performance_metrics  | detail 6 months; hourly/daily rollup 2 years             | rollup refreshed, detail dropped     |
| global_patterns      | kept for ever, one version per round                     | never touched (counted)              |
| local_patterns       | 1 year, or until the store's next successful mining      | deleted                              |

Periods come from ``server_configs`` (``retention_*_days``). TimescaleDB (compose stack) or native
partitions (this machine): the path is read from ``timeseries_backend()`` and logged; on TimescaleDB
the chunk drops go through ``drop_chunks`` and the rollups are continuous aggregates with their own
retention policies.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from include.retain import archive
from include.retain.policy import Cutoffs, RetentionPolicy

log = logging.getLogger("include.retain.run")

# local patterns past their rule: older than the cutoff, or superseded by a newer successful mining of
# the same store (a completed job whose completion is later than the pattern's own job's, or
# superseded_at set by the mining DAG, migration 0200). A failed or unfinished newer job supersedes
# nothing. A superseded pattern that a privacy release still references (privacy_applications.pattern_id)
# is kept until its year is up, as migration 0200 intends; then its release row is unlinked (pattern_id
# NULL, the released values stay) and the pattern removed.
LOCAL_PATTERNS_DUE = """
SELECT lp.id,
       CASE WHEN lp.created_at < %(cutoff)s THEN 'expired' ELSE 'superseded' END AS reason,
       pg_column_size(lp.*) AS bytes
  FROM local_patterns lp
  JOIN mining_jobs j ON j.id = lp.mining_job_id
 WHERE lp.created_at < %(cutoff)s
    OR ((lp.superseded_at < %(seen_before)s
         OR EXISTS (SELECT 1 FROM mining_jobs n
                     WHERE n.store_id = lp.store_id AND n.id <> j.id AND n.status = 'completed'
                       AND n.completed_at < %(seen_before)s
                       AND n.completed_at > COALESCE(j.completed_at, j.started_at, lp.created_at)))
        AND NOT EXISTS (SELECT 1 FROM privacy_applications pa WHERE pa.pattern_id = lp.id))
"""


@dataclass
class TableReport:
    table: str
    rule: str
    cutoff: str | None
    rows: int = 0            # rows archived and/or removed (or that would be)
    bytes: int = 0           # archived Parquet bytes; for removal only, the rows' size in PostgreSQL
    archived: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunReport:
    run_id: str
    as_of: str
    dry_run: bool
    backend: str
    cutoffs: dict[str, str]
    tables: list[TableReport]
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        verb = "would archive/remove" if self.dry_run else "archived/removed"
        return f"retention as_of {self.as_of} ({self.backend}): {verb} " + ", ".join(
            f"{t.table} {t.rows} rows" for t in self.tables)


def load_policy(conn: psycopg.Connection) -> RetentionPolicy:
    from include.db.configs import get_configs

    return RetentionPolicy.from_configs(get_configs(conn))


def _count_and_size(conn, table: str, tcol: str, cutoff: datetime) -> tuple[int, int]:
    return conn.execute(sql.SQL("SELECT count(*), COALESCE(sum(pg_column_size(x.*)), 0) FROM {} x WHERE {} < %s")
                        .format(sql.Identifier(table), sql.Identifier(tcol)), (cutoff,)).fetchone()


def _partitions_before(conn, table: str, cutoff: datetime) -> list[str]:
    return [r[0] for r in conn.execute("SELECT * FROM timeseries_partitions(%s)", (table,)).fetchall()
            if not r[3] and r[2] is not None and r[2] <= cutoff]


def plan(dsn: str, as_of: date, policy: RetentionPolicy | None = None) -> RunReport:
    """What a run with ``as_of`` would archive and remove, per table; touches nothing."""
    t0 = time.monotonic()
    with psycopg.connect(dsn, application_name="retain_plan") as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        policy = policy or load_policy(conn)
        c = policy.cutoffs(as_of)
        backend = conn.execute("SELECT timeseries_backend()").fetchone()[0]
        reports = []
        for table, rule, cutoff in (("transactions", f"{policy.transactions_days} days, then archived",
                                     c.transactions),
                                    ("activity_logs", f"{policy.activity_logs_days} days, then archived",
                                     c.activity_logs)):
            spec = archive.table_spec(table)
            n, size = _count_and_size(conn, table, spec.time_column, cutoff)
            r = TableReport(table, rule, cutoff.isoformat(), n, size, archived=True)
            r.details["files_prefix"] = f"{archive.ARCHIVE_PREFIX}/{table}/"
            if spec.timeseries:
                r.details["partitions_to_drop"] = _partitions_before(conn, table, cutoff)
            reports.append(r)
        n, size = _count_and_size(conn, "performance_metrics", "recorded_at", c.metrics_detail)
        rollup_rows = 0
        if backend == "native":
            rollup_rows = conn.execute("SELECT count(*) FROM performance_metrics_rollup WHERE bucket_start < %s",
                                       (c.metrics_rollup,)).fetchone()[0]
        reports.append(TableReport("performance_metrics",
                                   f"detail {policy.metrics_detail_days} days, rollups {policy.metrics_rollup_days} days",
                                   c.metrics_detail.isoformat(), n, size, details={
                                       "partitions_to_drop": _partitions_before(conn, "performance_metrics",
                                                                                c.metrics_detail),
                                       "rollup_cutoff": c.metrics_rollup.isoformat(),
                                       "rollup_rows_to_purge": rollup_rows}))
        reports.append(_local_patterns_report(conn, policy, c))
        reports.append(_global_patterns_report(conn))
        conn.rollback()
    rep = RunReport(str(uuid.uuid4()), as_of.isoformat(), True, backend, c.as_dict(), reports,
                    round(time.monotonic() - t0, 3))
    log.info("dry run: %s", rep.summary())
    return rep


def _local_patterns_report(conn, policy: RetentionPolicy, c: Cutoffs) -> TableReport:
    rows = conn.execute(LOCAL_PATTERNS_DUE, {"cutoff": c.local_patterns,
                                             "seen_before": c.mining_seen_before}).fetchall()
    r = TableReport("local_patterns", f"{policy.local_patterns_days} days or until the next successful mining",
                    c.local_patterns.isoformat(), len(rows), sum(x[2] for x in rows))
    r.details = {"expired": sum(1 for x in rows if x[1] == "expired"),
                 "superseded": sum(1 for x in rows if x[1] == "superseded")}
    return r


def _global_patterns_report(conn) -> TableReport:
    n, versions = conn.execute("SELECT count(*), count(DISTINCT round_id) FROM global_patterns").fetchone()
    latest = conn.execute("SELECT max(round_number) FROM global_patterns_latest").fetchone()[0]
    return TableReport("global_patterns", "kept for ever, one version per round", None, 0, 0,
                       details={"kept": n, "versions": versions, "latest_version": latest})


def run(dsn: str, store: archive.S3Store, as_of: date, *, dry_run: bool = False,
        policy: RetentionPolicy | None = None, crash_at: str | None = None, record: bool = True) -> RunReport:
    """Apply every rule for ``as_of``; with ``dry_run`` only :func:`plan`. Records counts and bytes per table
    in ``performance_metrics`` and one ``activity_logs`` entry (real runs only)."""
    if dry_run:
        return plan(dsn, as_of, policy)
    t0 = time.monotonic()
    run_id = uuid.uuid4()
    with psycopg.connect(dsn, autocommit=True, application_name="retain_run") as conn:
        policy = policy or load_policy(conn)
        backend = conn.execute("SELECT timeseries_backend()").fetchone()[0]
    c = policy.cutoffs(as_of)
    log.info("retention run %s as_of %s on the %s time-series path (%s)", run_id, as_of, backend,
             "native monthly partitions + rollup table" if backend == "native"
             else "TimescaleDB chunks, compression/retention policies, continuous aggregates")
    reports = []
    for table, cutoff, days in (("transactions", c.transactions, policy.transactions_days),
                                ("activity_logs", c.activity_logs, policy.activity_logs_days)):
        a = archive.archive_table(dsn, store, table, cutoff, as_of=as_of, run_id=run_id, crash_at=crash_at)
        reports.append(TableReport(table, f"{days} days, then archived", cutoff.isoformat(), a.rows, a.bytes, True,
                                   details={k: v for k, v in a.as_dict().items()
                                            if k in ("manifest_id", "files", "partitions_dropped",
                                                     "abandoned_manifests", "range_start", "range_end")}))
    with psycopg.connect(dsn, application_name="retain_run") as conn:
        reports.append(_metrics_detail(conn, policy, c, backend))
        conn.commit()
        reports.append(_local_patterns(conn, policy, c))
        conn.commit()
        reports.append(_global_patterns_report(conn))
        conn.commit()
        rep = RunReport(str(run_id), as_of.isoformat(), False, backend, c.as_dict(), reports,
                        round(time.monotonic() - t0, 3))
        if record:
            record_run(conn, rep)
            conn.commit()
    log.info("%s in %.1fs", rep.summary(), rep.seconds)
    return rep


def _metrics_detail(conn, policy: RetentionPolicy, c: Cutoffs, backend: str) -> TableReport:
    """Detail older than the cutoff: first make sure the hourly/daily rollup covers it, then drop whole
    monthly partitions and delete the rest; purge rollups older than their own cutoff."""
    cutoff = c.metrics_detail
    n, size = _count_and_size(conn, "performance_metrics", "recorded_at", cutoff)
    details: dict[str, Any] = {"rollup_cutoff": c.metrics_rollup.isoformat()}
    if backend == "native":
        lo = conn.execute("SELECT min(recorded_at) FROM performance_metrics WHERE recorded_at < %s",
                          (cutoff,)).fetchone()[0]
        if lo is not None:
            # days from the oldest remaining detail up to the cutoff still have all their detail rows
            details["rollup_rows_refreshed"] = conn.execute(
                "SELECT performance_metrics_rollup_refresh(%s, %s)", (lo, cutoff - _one_us())).fetchone()[0]
        removed, dropped = 0, []
        for name in _partitions_before(conn, "performance_metrics", cutoff):
            k = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()[0]
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
            removed += k
            dropped.append(name)
        removed += conn.execute("DELETE FROM performance_metrics WHERE recorded_at < %s", (cutoff,)).rowcount
        details["partitions_dropped"] = dropped
        details["rollup_rows_purged"] = conn.execute("SELECT performance_metrics_rollup_purge(%s)",
                                                     (c.metrics_rollup,)).fetchone()[0]
    else:
        removed = conn.execute("DELETE FROM performance_metrics WHERE recorded_at < %s", (cutoff,)).rowcount
        details["chunks_dropped"] = [r[0] for r in conn.execute(
            "SELECT timeseries_drop_partitions_before('performance_metrics', %s)", (cutoff,))]
        for cagg in ("performance_metrics_hourly", "performance_metrics_daily"):
            conn.execute("SELECT drop_chunks(%s::regclass, older_than => %s)", (cagg, c.metrics_rollup))
        details["rollups"] = "continuous aggregates (retention policies; chunks before the cutoff dropped)"
    if removed != n:
        raise RuntimeError(f"performance_metrics: removed {removed} rows, expected {n}")
    return TableReport("performance_metrics",
                       f"detail {policy.metrics_detail_days} days, rollups {policy.metrics_rollup_days} days",
                       cutoff.isoformat(), removed, size, False, details)


def _one_us():
    from datetime import timedelta

    return timedelta(microseconds=1)


def _local_patterns(conn, policy: RetentionPolicy, c: Cutoffs) -> TableReport:
    rep = _local_patterns_report(conn, policy, c)
    if rep.rows == 0:
        return rep
    conn.execute("CREATE TEMP TABLE retain_lp (id uuid PRIMARY KEY) ON COMMIT DROP")
    conn.execute("INSERT INTO retain_lp SELECT id FROM (" + LOCAL_PATTERNS_DUE + ") d",
                 {"cutoff": c.local_patterns, "seen_before": c.mining_seen_before})
    # a released value keeps its row in privacy_applications; only its link to the removed pattern goes
    nullable = conn.execute("""SELECT NOT attnotnull FROM pg_attribute
                                WHERE attrelid = 'privacy_applications'::regclass AND attname = 'pattern_id'""").fetchone()
    if nullable and nullable[0]:
        rep.details["privacy_applications_unlinked"] = conn.execute(
            "UPDATE privacy_applications p SET pattern_id = NULL FROM retain_lp r WHERE p.pattern_id = r.id").rowcount
    else:
        kept = conn.execute("DELETE FROM retain_lp r USING privacy_applications p WHERE p.pattern_id = r.id").rowcount
        rep.details["kept_referenced_by_privacy_applications"] = kept
    rep.rows = conn.execute("DELETE FROM local_patterns l USING retain_lp r WHERE l.id = r.id").rowcount
    return rep


def record_run(conn: psycopg.Connection, rep: RunReport) -> None:
    """Counts and bytes per table into performance_metrics, one activity_logs entry for the run."""
    from include.db.activity import log_activity
    from include.db.metrics import record_metric

    meta = {"run_id": rep.run_id, "as_of": rep.as_of, "backend": rep.backend}
    for t in rep.tables:
        if t.table == "global_patterns":
            record_metric(conn, "retention", "global_patterns.kept", t.details["kept"], metadata=meta)
            continue
        record_metric(conn, "retention", f"{t.table}.rows", t.rows, metadata={**meta, "cutoff": t.cutoff,
                                                                              "archived": t.archived})
        record_metric(conn, "retention", f"{t.table}.bytes", t.bytes, metadata={**meta, "cutoff": t.cutoff,
                                                                                "archived": t.archived})
    record_metric(conn, "retention", "run.seconds", Decimal(str(rep.seconds)), metadata=meta)
    log_activity(conn, "retention_run", rep.summary(), resource_type="retention_run",
                 resource_id=uuid.UUID(rep.run_id), additional_data=_jsonable(rep.as_dict()))


def _jsonable(d):
    import json

    return json.loads(json.dumps(d, default=str))
