"""Planning and running the per-store mining jobs (what the DAG's tasks call).

* :func:`plan_runs` - which stores (the run's ``store_ids``; else the stores of the triggering asset
  events; else every active store), each store's window (default: since its last successful mining,
  or everything), its transaction count and total utility, the thresholds (:mod:`include.mine.params`),
  the engine path (local, or PySpark above ``spark_threshold_transactions``), and one ``pending``
  ``mining_jobs`` row per store. With a ``run_key`` (the DAG run) the job ids are derived from it
  (uuid5), so a retried plan finds its jobs instead of creating new ones.
* :func:`run_job` - one job: ``running``, mined on its path, ``completed`` in the transaction that
  writes its patterns, or ``failed`` with the error (old patterns untouched). A job already
  ``completed`` (a retry after a lost success) returns its recorded result.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg

from include.mine import errors, store
from include.mine.params import MiningSettings, RunRequest, engine_path, resolve_thresholds

log = logging.getLogger(__name__)

JOB_NAMESPACE = uuid.UUID("6f1c1d52-3b0e-4f3f-9a55-6d696e650006")


@dataclass(frozen=True)
class PlannedJob:
    job_id: str
    store_id: str
    engine_path: str
    n_transactions: int
    window_start: str | None
    window_end: str | None
    min_utility: str
    created: bool


@dataclass
class Plan:
    jobs: list[PlannedJob] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def for_path(self, path: str) -> list[dict[str, Any]]:
        return [asdict(j) for j in self.jobs if j.engine_path == path]

    def as_dict(self) -> dict[str, Any]:
        return {"jobs": [asdict(j) for j in self.jobs], "skipped": self.skipped}


def job_id_for(run_key: str | None, store_id) -> uuid.UUID:
    return uuid.uuid5(JOB_NAMESPACE, f"{run_key}/{store_id}") if run_key else uuid.uuid4()


def _stores(conn: psycopg.Connection, req: RunRequest, event_store_ids: list[str] | None,
            skipped: list[dict[str, str]]) -> list[uuid.UUID]:
    from include.db.stores import get_store, list_stores

    if req.store_ids or event_store_ids:
        explicit = bool(req.store_ids)
        out = []
        for sid in (req.store_ids or event_store_ids or ()):
            try:
                s = get_store(conn, uuid.UUID(str(sid)))
            except ValueError:
                s = None
            if s is None:
                if explicit:
                    raise errors.ParameterError(f"store_ids: no store {sid}")
                skipped.append({"store_id": str(sid), "reason": "asset event names an unknown store"})
            elif not s.is_active:
                skipped.append({"store_id": str(s.id), "reason": "store is not active"})
            else:
                out.append(s.id)
        return list(dict.fromkeys(out))
    return [s.id for s in list_stores(conn, active_only=True)]


def plan_runs(conn: psycopg.Connection, req: RunRequest, *, run_key: str | None = None,
              event_store_ids: list[str] | None = None, now: datetime | None = None,
              run_info: dict[str, Any] | None = None) -> Plan:
    """Create the run's pending jobs (the caller commits). See the module doc."""
    cfg = MiningSettings.load(conn)
    plan = Plan()
    now = now or datetime.now(timezone.utc)
    for store_id in _stores(conn, req, event_store_ids, plan.skipped):
        job_id = job_id_for(run_key, store_id)
        existing = store.get_job(conn, job_id)
        if existing is not None:  # a retried plan task
            plan.jobs.append(PlannedJob(str(job_id), str(store_id), existing.engine_path, existing.n_transactions or 0,
                                        _iso(existing.window_start), _iso(existing.window_end),
                                        str(existing.min_utility), False))
            continue
        ws = req.window_start if req.window_start is not None else store.last_window_end(conn, store_id)
        we = req.window_end or now
        if ws is not None and ws >= we:
            plan.skipped.append({"store_id": str(store_id), "reason": f"empty window [{_iso(ws)}, {_iso(we)})"})
            continue
        n, total = store.window_totals(conn, store_id, ws, we)
        if n == 0:
            why = "no transactions since its last successful mining" if req.window_start is None and ws else \
                "no transactions in the window"
            plan.skipped.append({"store_id": str(store_id), "reason": why})
            continue
        th = resolve_thresholds(req, cfg, total)
        path = engine_path(req, cfg, n)
        params = {**th.as_params(), "total_utility": str(total), "engine": req.engine,
                  "spark_threshold_transactions": cfg.spark_threshold_transactions,
                  "spark_partitions_per_core": cfg.spark_partitions_per_core, **(run_info or {})}
        created = store.create_run_job(
            conn, job_id, store_id, min_utility=th.min_utility, min_support=th.min_support,
            max_pattern_length=th.max_pattern_length, use_pruning=th.use_pruning, batch_size=th.batch_size,
            engine_path=path, window_start=ws, window_end=we, n_transactions=n, params=params)
        plan.jobs.append(PlannedJob(str(job_id), str(store_id), path, n, _iso(ws), _iso(we), str(th.min_utility),
                                    created))
    return plan


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d else None


def _summary(job: store.JobRow, **extra) -> dict[str, Any]:
    return {"job_id": str(job.id), "store_id": str(job.store_id), "status": job.status,
            "engine_path": job.engine_path, "patterns_found": job.patterns_found,
            "n_transactions": job.n_transactions,
            "execution_time_seconds": float(job.execution_time_seconds or 0),
            "memory_used_mb": float(job.memory_used_mb or 0), **extra}


def run_job(dsn: str, job_id: uuid.UUID | str, *, spark_session=None, inject_failure: str | None = None,
            timeout: float | None = None) -> dict[str, Any]:
    """Run one pending (or failed/interrupted, on retry) job to ``completed``; see the module doc."""
    job_id = uuid.UUID(str(job_id))
    from include.db.mining import start_job
    from include.search.live import LiveFeed

    live = LiveFeed("mining", job_id)   # best effort: Redis down never fails a mining job

    with psycopg.connect(dsn, application_name="mine_store_patterns") as conn:
        job = store.get_job(conn, job_id)
        if job is None:
            raise errors.MiningError(f"mining job {job_id} does not exist")
        if job.status == "completed":
            log.info("job %s is already completed (a retry after success): nothing to do", job_id)
            return _summary(job, reused=True)
        start_job(conn, job_id)
        conn.commit()
        job = store.get_job(conn, job_id)
    started = time.time()
    live.update(phase="running", store_id=job.store_id, engine_path=job.engine_path,
                n_transactions=job.n_transactions, started_at=datetime.fromtimestamp(started, timezone.utc))
    log.info("job %s: store %s, %s transactions, path %s, min_utility %s", job_id, job.store_id,
             job.n_transactions, job.engine_path, job.min_utility)
    try:
        if job.engine_path == "spark":
            from include.mine.spark import run_spark_job

            run_spark_job(dsn, job, started=started, session=spark_session, inject_failure=inject_failure)
        else:
            from include.mine.local import run_local

            run_local(dsn, job, started=started, inject_failure=inject_failure, timeout=timeout)
    except BaseException as e:
        message = str(e) or type(e).__name__
        live.update(phase="failed", error_message=message[:1000])
        with psycopg.connect(dsn, application_name="mine_store_patterns") as conn:
            try:
                store.record_failure(conn, job, message, started=started,
                                     memory_used_mb=getattr(e, "memory_used_mb", None))
            except LookupError:  # the result was committed before the failure: the job is done
                done = store.get_job(conn, job_id)
                if done is not None and done.status == "completed":
                    return _summary(done)
                raise
        raise
    with psycopg.connect(dsn, application_name="mine_store_patterns") as conn:
        out = _summary(store.get_job(conn, job_id))
    live.update(phase="completed", **{k: out[k] for k in ("patterns_found", "execution_time_seconds",
                                                          "memory_used_mb")})
    return out
