"""Live state in Redis: progress of rounds, ingestion and shipping, the cache of ``server_configs``, the
locks the DAGs take, API sessions and the token revocation set.

Rules: every key has a TTL, and nothing lives only in Redis. Progress is a view of what the tables
already record (federated_rounds, round_participations, transaction_files, search_ship_state); the
config cache is refilled from PostgreSQL; revoked tokens are stored in ``token_revocations`` and
reloaded into Redis when Redis lost them; a lost session means logging in again.

Keys (``<ns>`` = namespace, ``platform`` by default, a random one in tests):

| key | type | TTL |
|---|---|---|
| ``<ns>:progress:<kind>:<id>`` | hash: phase, counts, updated_at | 1 day (refreshed on update) |
| ``<ns>:progress:<kind>:<id>:answered:<phase>`` | set of store ids | same |
| ``<ns>:configs`` | string: JSON {version, values} | 1 hour (and version-checked) |
| ``<ns>:lock:<name>`` | string: owner token (redis-py Lock) | the lock's ttl |
| ``<ns>:session:<sid>`` | hash | session ttl (sliding) |
| ``<ns>:user_sessions:<user>`` | set of sids | longest session ttl |
| ``<ns>:revoked:<jti>`` | string | until the token's expiry |
| ``<ns>:revoked:__loaded__`` | string: marker that the set was loaded from PostgreSQL | 1 day |

All functions take a redis-py client built with ``decode_responses=True`` (``include.search.clients.redis_client``;
in tasks ``RedisHook(redis_conn_id="platform_redis").get_conn()`` — pass ``decode_responses`` or use
:func:`text_client`).
"""
from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable

DEFAULT_NS = "platform"
PROGRESS_TTL_S = 24 * 3600
CONFIG_TTL_S = 3600
NOTIFY_CHANNEL = "server_configs_changed"


def text_client(r):
    """The same Redis connection settings with ``decode_responses=True`` (for a hook's client)."""
    kw = dict(r.connection_pool.connection_kwargs)
    if kw.get("decode_responses"):
        return r
    import redis

    kw["decode_responses"] = True
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=r.connection_pool.connection_class,
                                                            **kw))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _flat(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# ------------------------------------------------------------------------------------------ progress
class Progress:
    """Live progress of one thing (``kind`` = round | ingest | index_search | mining, ``id`` its id)."""

    def __init__(self, r, kind: str, id_: str, *, ns: str = DEFAULT_NS, ttl_s: int = PROGRESS_TTL_S):
        self.r, self.ttl = r, ttl_s
        self.key = f"{ns}:progress:{kind}:{id_}"

    def update(self, **fields: Any) -> None:
        fields = {k: _flat(v) for k, v in fields.items() if v is not None}
        fields["updated_at"] = _now()
        p = self.r.pipeline()
        p.hset(self.key, mapping=fields)
        p.expire(self.key, self.ttl)
        p.execute()

    def incr(self, field_: str, by: int = 1) -> int:
        p = self.r.pipeline()
        p.hincrby(self.key, field_, by)
        p.hset(self.key, "updated_at", _now())
        p.expire(self.key, self.ttl)
        return p.execute()[0]

    def answered(self, phase: str, who: str) -> int:
        """Record that ``who`` answered ``phase``; returns how many have answered it."""
        k = f"{self.key}:answered:{phase}"
        p = self.r.pipeline()
        p.sadd(k, who)
        p.expire(k, self.ttl)
        p.scard(k)
        n = p.execute()[2]
        p = self.r.pipeline()
        p.hset(self.key, mapping={f"answered_{phase}": n, "updated_at": _now()})
        p.expire(self.key, self.ttl)
        p.execute()
        return n

    def get(self) -> dict:
        """Fields plus ``answered``: {phase: sorted members}."""
        d = self.r.hgetall(self.key)
        answered = {}
        for k in [k for k in d if k.startswith("answered_")]:
            phase = k[len("answered_"):]
            answered[phase] = sorted(self.r.smembers(f"{self.key}:answered:{phase}"))
        if d:
            d["answered"] = answered
        return d

    def clear(self) -> None:
        keys = [self.key] + [k for k in self.r.scan_iter(f"{self.key}:answered:*")]
        self.r.delete(*keys)


def round_progress(r, round_id, *, ns: str = DEFAULT_NS) -> Progress:
    """Progress of a federated round: ``update(phase=..., invited=n, ...)``, ``answered(phase, store_id)``."""
    return Progress(r, "round", str(round_id), ns=ns)


def ingest_progress(r, file_id, *, ns: str = DEFAULT_NS) -> Progress:
    """Progress of an ingestion run: ``update(phase=..., rows_read=..., rows_valid=..., rows_rejected=...)``."""
    return Progress(r, "ingest", str(file_id), ns=ns)


def mining_progress(r, job_id, *, ns: str = DEFAULT_NS) -> Progress:
    """Progress of a mining job: ``update(phase=..., store_id=..., transactions_read=..., patterns_found=...)``."""
    return Progress(r, "mining", str(job_id), ns=ns)


class LiveFeed:
    """Best-effort :class:`Progress` for the pipeline's own tasks (ingestion, mining): Redis is not on
    their critical path, so ``update``/``incr`` never raise. The first failure is logged once as a
    warning naming Redis; later calls are dropped (the tables hold the truth, only the live view is
    lost). ``kind``/``id_`` as in :class:`Progress`; the client comes from connection ``platform_redis``
    and the namespace from ``PLATFORM_REDIS_NAMESPACE`` (default ``platform``) unless given."""

    def __init__(self, kind: str, id_, *, r=None, ns: str | None = None, conn_id: str | None = None,
                 socket_timeout: float = 2.0) -> None:
        import logging
        import os

        self._log = logging.getLogger("include.search.live")
        self._progress: Progress | None = None
        self._where = f"progress:{kind}:{id_}"
        try:
            if r is None:
                from include.search.clients import REDIS, redis_client

                r = redis_client(conn_id or REDIS, socket_timeout=socket_timeout)
            self._progress = Progress(r, kind, str(id_), ns=ns or os.environ.get("PLATFORM_REDIS_NAMESPACE",
                                                                                DEFAULT_NS))
        except Exception as e:  # noqa: BLE001 - no connection configured: no live view
            self._fail(e)

    def _fail(self, e: Exception) -> None:
        if self._progress is not None or not getattr(self, "_warned", False):
            self._log.warning("Redis is unavailable, live progress %s is not published (the tables still "
                              "record everything): %s: %s", self._where, type(e).__name__, e)
        self._warned, self._progress = True, None

    def update(self, **fields: Any) -> None:
        if self._progress is not None:
            try:
                self._progress.update(**fields)
            except Exception as e:  # noqa: BLE001 - see the class doc
                self._fail(e)

    def incr(self, field_: str, by: int = 1) -> None:
        if self._progress is not None:
            try:
                self._progress.incr(field_, by)
            except Exception as e:  # noqa: BLE001 - see the class doc
                self._fail(e)

    @property
    def live(self) -> bool:
        return self._progress is not None


# ------------------------------------------------------------------------------------------ locks
class LockBusy(RuntimeError):
    """The lock is held by someone else."""


class PlatformLock:
    """A Redis lock with a TTL (a crashed holder frees it when the TTL runs out) and an owner token
    (only the holder releases or extends it). Names in use:

    - ``round:region:<region_id>`` one running federated round per region (issue 8)
    - ``mining:store:<store_id>`` one mining job per store (issue 6)
    - ``index_search:<target>`` one shipping run per namespace (this package)
    """

    def __init__(self, r, name: str, *, ttl_s: int = 900, ns: str = DEFAULT_NS):
        self.name, self.ttl = name, ttl_s
        self._lock = r.lock(f"{ns}:lock:{name}", timeout=ttl_s, thread_local=False)

    def acquire(self, blocking_timeout: float | None = 0) -> "PlatformLock":
        ok = self._lock.acquire(blocking=blocking_timeout is None or blocking_timeout > 0,
                                blocking_timeout=blocking_timeout or None)
        if not ok:
            raise LockBusy(f"lock {self.name!r} is held by another run (it expires within {self.ttl}s "
                           "if its holder died)")
        return self

    def extend(self) -> None:
        """Reset the TTL to its full length (long runs call it as they make progress)."""
        if self._lock.owned():
            self._lock.reacquire()

    def release(self) -> None:
        try:
            if self._lock.owned():
                self._lock.release()
        except Exception:  # noqa: BLE001 - expired meanwhile, or Redis went away: the TTL frees it
            pass

    def __enter__(self) -> "PlatformLock":
        return self.acquire(blocking_timeout=0)

    def __exit__(self, *exc) -> None:
        self.release()


# ------------------------------------------------------------------------------------------ configs
class ConfigCache:
    """``server_configs`` cached in Redis, invalidated on every change.

    Migration 0600 bumps ``server_configs_version`` and sends NOTIFY ``server_configs_changed`` in a
    statement trigger. :meth:`get_all` reads the version (one primary-key row) and the cached copy; a
    different version (or no copy) refills it from PostgreSQL, values and version read in one
    snapshot. :meth:`listen` drops the copy on each notification, for readers that skip the version
    check (``check_version=False``), e.g. a hot API path.
    """

    def __init__(self, r, *, ns: str = DEFAULT_NS, ttl_s: int = CONFIG_TTL_S):
        self.r, self.ttl = r, ttl_s
        self.key = f"{ns}:configs"
        self.hits = self.misses = 0

    @staticmethod
    def _db_version(conn) -> int:
        return conn.execute("SELECT version FROM server_configs_version").fetchone()[0]

    def _fill(self, conn) -> dict:
        from include.db.configs import parse_value

        row = conn.execute(
            """SELECT v.version, COALESCE((SELECT json_agg(json_build_array(config_key, config_value, data_type))
                                              FROM server_configs), '[]'::json)
                 FROM server_configs_version v""").fetchone()
        version, rows = row
        values = {k: parse_value(k, v, t) for k, v, t in rows}
        blob = json.dumps({"version": version, "rows": rows})
        self.r.set(self.key, blob, ex=self.ttl)
        self.misses += 1
        return values

    def get_all(self, conn, *, check_version: bool = True) -> dict[str, Any]:
        """Every setting, typed as ``include.db.configs`` types them (number -> Decimal, ...)."""
        from include.db.configs import parse_value

        blob = self.r.get(self.key)
        if blob is not None:
            cached = json.loads(blob)
            if not check_version or cached["version"] == self._db_version(conn):
                self.hits += 1
                return {k: parse_value(k, v, t) for k, v, t in cached["rows"]}
        return self._fill(conn)

    def get(self, conn, key: str, default: Any = None, *, check_version: bool = True) -> Any:
        return self.get_all(conn, check_version=check_version).get(key, default)

    def invalidate(self) -> None:
        self.r.delete(self.key)

    def listen(self, dsn: str, *, stop_after_s: float | None = None, max_events: int | None = None) -> int:
        """LISTEN on ``server_configs_changed`` and drop the cached copy on each notification; returns the
        number of notifications handled (runs until ``stop_after_s``/``max_events``, or for ever)."""
        import psycopg

        n = 0
        deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            while deadline is None or time.monotonic() < deadline:
                timeout = 1.0 if deadline is None else max(0.05, min(1.0, deadline - time.monotonic()))
                for _ in conn.notifies(timeout=timeout):
                    self.invalidate()
                    n += 1
                    if max_events is not None and n >= max_events:
                        return n
        return n


# ------------------------------------------------------------------------------------------ sessions
class Sessions:
    """API sessions (issue 12): a hash per session with a sliding TTL, and the set of a user's sessions.
    Losing them (Redis restart) only means logging in again."""

    def __init__(self, r, *, ns: str = DEFAULT_NS, ttl_s: int = 8 * 3600):
        self.r, self.ns, self.ttl = r, ns, ttl_s

    def create(self, user_id, data: dict[str, Any] | None = None, *, ttl_s: int | None = None) -> str:
        sid = secrets.token_urlsafe(24)
        ttl = ttl_s or self.ttl
        key, ukey = f"{self.ns}:session:{sid}", f"{self.ns}:user_sessions:{user_id}"
        p = self.r.pipeline()
        p.hset(key, mapping={"user_id": str(user_id), "created_at": _now(), "ttl_s": ttl,
                             **{k: _flat(v) for k, v in (data or {}).items()}})
        p.expire(key, ttl)
        p.sadd(ukey, sid)
        p.expire(ukey, max(ttl, self.ttl))
        p.execute()
        return sid

    def get(self, sid: str, *, touch: bool = True) -> dict | None:
        key = f"{self.ns}:session:{sid}"
        d = self.r.hgetall(key)
        if not d:
            return None
        if touch:
            self.r.expire(key, int(d.get("ttl_s", self.ttl)))
        return d

    def end(self, sid: str) -> None:
        key = f"{self.ns}:session:{sid}"
        user = self.r.hget(key, "user_id")
        self.r.delete(key)
        if user:
            self.r.srem(f"{self.ns}:user_sessions:{user}", sid)

    def end_user(self, user_id) -> int:
        """End every session of a user (password change, deactivation); returns how many."""
        ukey = f"{self.ns}:user_sessions:{user_id}"
        sids = self.r.smembers(ukey)
        if sids:
            self.r.delete(*[f"{self.ns}:session:{s}" for s in sids])
        self.r.delete(ukey)
        return len(sids)


# ------------------------------------------------------------------------------------------ tokens
class TokenRevocations:
    """Revoked JWT ids: stored in PostgreSQL (``token_revocations``) and mirrored in Redis with a TTL
    ending at the token's expiry. :meth:`is_revoked` answers from Redis; when Redis lost the set (the
    load marker is gone) it is reloaded from PostgreSQL first, so a restart never un-revokes a token."""

    def __init__(self, r, *, ns: str = DEFAULT_NS):
        self.r, self.ns = r, ns
        self.marker = f"{ns}:revoked:__loaded__"

    def _key(self, jti: str) -> str:
        return f"{self.ns}:revoked:{jti}"

    def revoke(self, conn, jti: str, expires_at: datetime, *, user_id=None, reason: str | None = None) -> None:
        """Revoke a token until ``expires_at`` (the caller commits ``conn``; Redis is written at once)."""
        conn.execute("""INSERT INTO token_revocations (jti, user_id, expires_at, reason) VALUES (%s, %s, %s, %s)
                        ON CONFLICT (jti) DO UPDATE SET expires_at = GREATEST(token_revocations.expires_at,
                                                                              EXCLUDED.expires_at)""",
                     (jti, user_id, expires_at, reason))
        self._mirror([(jti, expires_at)])

    def _mirror(self, rows: Iterable[tuple[str, datetime]]) -> int:
        now = time.time()
        p = self.r.pipeline()
        n = 0
        for jti, exp in rows:
            if exp.timestamp() > now:
                p.set(self._key(jti), "1", exat=int(exp.timestamp()) + 1)
                n += 1
        p.execute()
        return n

    def load(self, conn) -> int:
        """Copy every unexpired revocation from PostgreSQL into Redis and set the load marker."""
        rows = conn.execute("SELECT jti, expires_at FROM token_revocations WHERE expires_at > now()").fetchall()
        n = self._mirror(rows)
        self.r.set(self.marker, _now(), ex=PROGRESS_TTL_S)
        return n

    def is_revoked(self, conn, jti: str) -> bool:
        if not self.r.exists(self.marker):
            self.load(conn)
        return bool(self.r.exists(self._key(jti)))

    @staticmethod
    def purge_expired(conn) -> int:
        return conn.execute("DELETE FROM token_revocations WHERE expires_at < now()").rowcount


def to_jsonable(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    return v
