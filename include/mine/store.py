"""The SQL of the mining runs: windows, the run columns of ``mining_jobs`` (migration 0200), reading a
store's transactions in batches, and writing a run's result (COPY through :mod:`include.db.mining`,
superseding, completion) in one transaction.

Candidates for :mod:`include.db.mining` (owned by the data layer); kept here until they move.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from include.db import mining as dbm

# pg_advisory_xact_lock(namespace, key): one result written at a time per store
_LOCK_NAMESPACE = 0x6D696E65  # "mine"


@dataclass(frozen=True)
class JobRow:
    id: uuid.UUID
    store_id: uuid.UUID
    status: str
    min_utility: Decimal
    min_support: Decimal
    max_pattern_length: int | None
    use_pruning: bool
    batch_size: int
    engine_path: str
    window_start: datetime | None
    window_end: datetime | None
    n_transactions: int | None
    params: dict
    patterns_found: int
    error_message: str | None
    execution_time_seconds: Decimal | None
    memory_used_mb: Decimal | None
    started_at: datetime | None
    completed_at: datetime | None

    @property
    def max_patterns(self) -> int | None:
        return self.params.get("max_patterns")

    @property
    def memory_budget_mb(self) -> int | None:
        return self.params.get("memory_budget_mb")


_JOB_COLS = ", ".join(JobRow.__dataclass_fields__)


def get_job(conn: psycopg.Connection, job_id: uuid.UUID) -> JobRow | None:
    row = conn.execute(f"SELECT {_JOB_COLS} FROM mining_jobs WHERE id = %s", (job_id,)).fetchone()
    return JobRow(*row) if row else None


def last_window_end(conn: psycopg.Connection, store_id: uuid.UUID) -> datetime | None:
    """Where the store's last successful mining stopped (its window_end, else its start)."""
    row = conn.execute(
        """SELECT COALESCE(window_end, started_at) FROM mining_jobs
            WHERE store_id = %s AND status = 'completed'
            ORDER BY completed_at DESC NULLS LAST LIMIT 1""", (store_id,)).fetchone()
    return row[0] if row else None


def window_totals(conn: psycopg.Connection, store_id: uuid.UUID, window_start: datetime | None,
                  window_end: datetime | None) -> tuple[int, Decimal]:
    """(transactions, total utility) of the store in [window_start, window_end)."""
    n, total = conn.execute(
        """SELECT count(*), COALESCE(sum(total_utility), 0) FROM transactions WHERE store_id = %(s)s
              AND (%(a)s::timestamptz IS NULL OR transaction_date >= %(a)s::timestamptz)
              AND (%(b)s::timestamptz IS NULL OR transaction_date < %(b)s::timestamptz)""",
        {"s": store_id, "a": window_start, "b": window_end}).fetchone()
    return n, Decimal(total)


def create_run_job(conn: psycopg.Connection, job_id: uuid.UUID, store_id: uuid.UUID, *, min_utility: Decimal,
                   min_support: Decimal, max_pattern_length: int | None, use_pruning: bool, batch_size: int,
                   engine_path: str, window_start: datetime | None, window_end: datetime | None,
                   n_transactions: int, params: dict[str, Any]) -> bool:
    """Create the ``pending`` job ``job_id`` unless it exists (a retried plan); True if created."""
    if conn.execute("SELECT 1 FROM mining_jobs WHERE id = %s", (job_id,)).fetchone():
        return False
    # max_pattern_length NULL = no cap (the column's DEFAULT 5 applies only when the column is omitted)
    dbm.create_job(conn, store_id, min_utility, min_support, max_pattern_length=max_pattern_length,
                   use_pruning=use_pruning, batch_size=batch_size, job_id=job_id)
    conn.execute(
        """UPDATE mining_jobs SET engine_path = %s, window_start = %s, window_end = %s, n_transactions = %s,
                                  params = %s WHERE id = %s""",
        (engine_path, window_start, window_end, n_transactions, Jsonb(params), job_id))
    return True


def iter_transaction_rows(conn: psycopg.Connection, store_id: uuid.UUID, window_start: datetime | None,
                          window_end: datetime | None, batch_size: int) -> Iterator[list[tuple]]:
    """Batches of ``(items, quantities, unit_utilities)`` of the store's window, read through a
    server-side cursor ``batch_size`` rows at a time (must run inside a transaction)."""
    with conn.cursor(name=f"mine_{uuid.uuid4().hex[:12]}") as cur:
        cur.itersize = batch_size
        cur.execute(
            """SELECT items, quantities, unit_utilities FROM transactions WHERE store_id = %(s)s
                  AND (%(a)s::timestamptz IS NULL OR transaction_date >= %(a)s::timestamptz)
                  AND (%(b)s::timestamptz IS NULL OR transaction_date < %(b)s::timestamptz)""",
            {"s": store_id, "a": window_start, "b": window_end})
        while batch := cur.fetchmany(batch_size):
            yield batch


def supersede_older_patterns(conn: psycopg.Connection, store_id: uuid.UUID, job_id: uuid.UUID) -> dict[str, int]:
    """Spec 4.1 "until next successful mining": delete the store's patterns of other jobs; those a privacy
    release still references are kept, marked superseded by ``job_id``."""
    marked = conn.execute(
        """UPDATE local_patterns lp SET superseded_at = now(), superseded_by_job_id = %(j)s
            WHERE lp.store_id = %(s)s AND lp.mining_job_id <> %(j)s AND lp.superseded_at IS NULL
              AND EXISTS (SELECT 1 FROM privacy_applications pa WHERE pa.pattern_id = lp.id)""",
        {"s": store_id, "j": job_id}).rowcount
    deleted = conn.execute(
        """DELETE FROM local_patterns lp
            WHERE lp.store_id = %(s)s AND lp.mining_job_id <> %(j)s
              AND NOT EXISTS (SELECT 1 FROM privacy_applications pa WHERE pa.pattern_id = lp.id)""",
        {"s": store_id, "j": job_id}).rowcount
    return {"deleted": deleted, "marked_superseded": marked}


def write_result(conn: psycopg.Connection, job: JobRow, patterns: Iterable[dbm.Pattern], *, started: float,
                 memory_used_mb, stats: dict[str, Any], inject_failure: str | None = None) -> dict[str, Any]:
    """In one transaction: drop rows of an earlier attempt of this job, COPY ``patterns``, supersede the
    store's older patterns, complete the job. ``memory_used_mb`` is a callable read after the COPY (the
    peak so far); ``started`` is the ``time.time()`` at which the job started running."""
    from include.db.activity import log_activity

    keyring = None
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s::text))", (_LOCK_NAMESPACE, job.store_id))
        if dbm.store_requires_encryption(conn, job.store_id):
            from include.security.crypto import Keyring

            keyring = Keyring.from_connection()
        conn.execute("DELETE FROM local_patterns WHERE mining_job_id = %s", (job.id,))
        n = dbm.copy_local_patterns(conn, job.id, job.store_id, patterns, keyring=keyring)
        if inject_failure == "after_copy":
            raise RuntimeError(f"injected failure after writing {n} patterns (test)")
        superseded = supersede_older_patterns(conn, job.store_id, job.id)
        mem = memory_used_mb()
        elapsed = time.time() - started
        stats = {**stats, "superseded": superseded, "patterns": n}
        conn.execute("UPDATE mining_jobs SET stats = %s WHERE id = %s", (Jsonb(stats), job.id))
        dbm.complete_job(conn, job.id, execution_time_seconds=Decimal(f"{elapsed:.3f}"),
                         memory_used_mb=Decimal(f"{mem:.1f}"), patterns_found=n)
        log_activity(conn, "mining_job_completed",
                     f"mined {n} patterns from {job.n_transactions} transactions ({job.engine_path})",
                     store_id=job.store_id, resource_type="mining_job", resource_id=job.id,
                     additional_data={"patterns_found": n, "execution_time_seconds": round(elapsed, 3),
                                      "memory_used_mb": round(mem, 1), "engine_path": job.engine_path,
                                      "superseded": superseded})
    return {"patterns_found": n, "execution_time_seconds": round(elapsed, 3), "memory_used_mb": round(mem, 1),
            "superseded": superseded}


def record_failure(conn: psycopg.Connection, job: JobRow, message: str, *, started: float | None,
                   memory_used_mb: float | None) -> None:
    """Mark the job ``failed`` with ``message`` (the old patterns are untouched)."""
    from include.db.activity import log_activity

    with conn.transaction():
        elapsed = None if started is None else Decimal(f"{time.time() - started:.3f}")
        mem = None if memory_used_mb is None else Decimal(f"{memory_used_mb:.1f}")
        dbm.fail_job(conn, job.id, message, execution_time_seconds=elapsed, memory_used_mb=mem)
        log_activity(conn, "mining_job_failed", message[:1000], store_id=job.store_id, resource_type="mining_job",
                     resource_id=job.id, additional_data={"engine_path": job.engine_path})


def to_db_pattern(items, utility, support: float, confidence: float) -> dbm.Pattern:
    """A pattern as ``include.db.mining`` writes it. ``support`` (support_count / n) and ``confidence``
    (all-confidence) are the engine's floats, written as their shortest decimal (read back as a float,
    each is the engine's value exactly)."""
    return dbm.Pattern(items=list(items), utility=Decimal(utility), support=Decimal(repr(support)),
                       confidence=Decimal(repr(confidence)))
