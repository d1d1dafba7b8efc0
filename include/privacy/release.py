"""The workflow's *privatize* step for mined stores (DAG ``privatize_store_patterns``, task ``apply_privacy``).

* :func:`plan_releases` - which stores release: each selected store's latest ``completed`` mining job
  (its window and ``max_pattern_length``); stores that cannot release are listed with the reason.
* :func:`release_store` - one store: :func:`include.privacy.apply.apply_privacy` in local mode over the
  job's window, store-proposed patterns through OpenDP's threshold mechanism, linked to the job's
  ``local_patterns``; writes ``privacy_applications`` and the ledger charge; returns the contribution.

A release is named ``<release_name>@<run_key>`` (the DAG run), so a retried task finds its own release:
already charged -> the recorded contribution is returned (no new noise, no new charge); only reserved
(the worker died before the values were recorded, so nothing left the store) -> the reservation is
aborted and the release is drawn afresh.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import psycopg

from . import ledger as L
from .apply import Contribution, apply_privacy

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)   # a job mined "from the first transaction"
MAX_NAME = 100                                      # privacy_budget_ledger.release_name VARCHAR(100)


@dataclass(frozen=True)
class ReleaseJob:
    store_id: str
    mining_job_id: str
    window_start: str           # ISO 8601, the mining job's window [start, end)
    window_end: str
    max_pattern_length: int

    @classmethod
    def of(cls, d: dict) -> "ReleaseJob":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def as_dict(self) -> dict:
        return asdict(self)


def release_name_for(name: str, run_key: str) -> str:
    """The ledger's release name of one DAG run: ``name@run_key`` (at most 100 characters)."""
    full = f"{name}@{run_key}"
    if len(full) > MAX_NAME:
        raise ValueError(f"release name {full!r} is longer than {MAX_NAME} characters: shorten release_name")
    return full


_LATEST_JOBS = """
    SELECT s.id::text, s.is_active, pc.store_id IS NOT NULL, j.id::text, j.window_start, j.window_end,
           j.completed_at, j.max_pattern_length
      FROM stores s
      LEFT JOIN privacy_configs pc ON pc.store_id = s.id
      LEFT JOIN LATERAL (SELECT id, window_start, window_end, completed_at, max_pattern_length
                           FROM mining_jobs WHERE store_id = s.id AND status = 'completed'
                          ORDER BY completed_at DESC NULLS LAST, id LIMIT 1) j ON true
     WHERE (%(ids)s::uuid[] IS NULL OR s.id = ANY(%(ids)s::uuid[]))
     ORDER BY s.id"""


def plan_releases(conn: psycopg.Connection, store_ids: list[str] | None, *, max_pattern_length: int | None = None
                  ) -> tuple[list[ReleaseJob], list[dict]]:
    """(jobs, skipped). ``store_ids`` empty/None: every active store with a privacy config and a completed
    mining job. A named store that cannot release is in ``skipped`` with ``reason``. ``max_pattern_length``
    caps the released itemset size (default: the job's own, at most 3 as the rounds use)."""
    with conn.transaction():
        rows = conn.execute(_LATEST_JOBS, {"ids": list(store_ids) if store_ids else None}).fetchall()
    found = {r[0] for r in rows}
    skipped = [{"store_id": s, "reason": "unknown store"} for s in (store_ids or []) if str(s) not in found]
    jobs = []
    for sid, active, has_cfg, job, ws, we, done, k in rows:
        reason = ("store is not active" if not active else "no privacy_configs row" if not has_cfg
                  else "no completed mining job" if job is None else None)
        if reason:
            if store_ids:
                skipped.append({"store_id": sid, "reason": reason})
            continue
        k = min(int(k), 3) if k else 3          # 0 / NULL: the job had no cap; releases stop at 3
        if max_pattern_length:
            k = min(k, int(max_pattern_length))
        jobs.append(ReleaseJob(sid, job, (ws or EPOCH).isoformat(), (we or done or datetime.now(timezone.utc)).isoformat(), k))
    return jobs, skipped


def _previous(conn: psycopg.Connection, store_id: str, name: str) -> L.LedgerEntry | None:
    for e in L.charges(conn, store_id):
        if e.round_id is None and e.release_name == name:
            return e
    return None


def release_store(conn: psycopg.Connection, job: ReleaseJob, *, epsilon: float, release_name: str,
                  hash_key=None) -> Contribution:
    """Privatise one store's mined window (local mode: full noise for ``epsilon``, which the store's ledger
    must afford; BudgetExceeded otherwise, before any noise). ``release_name`` is the run-scoped name of
    :func:`release_name_for`. ``hash_key`` is needed when the store's config has ``hash_patterns``."""
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
    prev = _previous(conn, job.store_id, release_name)
    if prev is not None and prev.status == "charged" and prev.output is not None:
        log.info("store %s: release %s already charged (ledger %s): returning it", job.store_id, release_name, prev.id)
        return Contribution.from_message(prev.output)
    if prev is not None and prev.status == "reserved":
        L.abort_charge(conn, prev.id, "a retry found the reservation of an attempt that stopped before its "
                                      "values were recorded (nothing was released)")
    return apply_privacy(conn, store_id=job.store_id, window_start=datetime.fromisoformat(job.window_start),
                         window_end=datetime.fromisoformat(job.window_end), mining_job_id=job.mining_job_id,
                         release_name=release_name, max_pattern_length=job.max_pattern_length,
                         epsilon=epsilon, hash_key=hash_key)


def summary(c: Contribution) -> dict:
    """One line per store for logs and the DAG's report (public values only)."""
    return {"store_id": c.store_id, "release_name": c.release_name, "source": c.source, "hashed": c.hashed,
            "patterns": len(c.patterns), "epsilon": round(c.epsilon, 6), "delta": c.delta,
            "noise_type": c.noise_type, "ledger_id": c.ledger_id}
