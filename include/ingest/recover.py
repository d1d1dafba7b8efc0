"""Recovering files stuck in ``processing`` (their loader died after its last retry).

    results = recover_stuck_files(conn, s3, stuck_after=timedelta(minutes=30), max_attempts=5)

A file is **stuck** when it is in ``processing``, its claim (``processing_started_at``, migration
0101; files claimed before it: ``upload_timestamp``) is older than ``stuck_after``, **and** no
live loader holds its claim lock (``load.file_lock_key``: a session-level advisory lock that a
loader holds from its claim to its end and that PostgreSQL frees when the loader's connection
dies). The sweep takes that lock itself (without waiting) while it decides, so a loader cannot
claim the file in between. Then:

* ``processing_attempts < max_attempts`` -> ``pending`` (processed again by the next run), with
  ``error_message`` saying what happened; activity ``transaction_file_recovered``;
* otherwise -> ``failed``, ``error_message`` ``<filename>: processing was interrupted <n> times
  (...) - not retried automatically; ...``, the object moved to ``failed/``; activity
  ``transaction_file_failed``. A manual run naming the file retries it (attempts start again).

Idempotent: a second sweep finds nothing to do; concurrent sweeps skip a file the other holds.
Each file is decided in its own transaction; its live progress in Redis (the dead loader's last
``loading``) gets ``phase`` ``pending`` or ``failed`` (best effort). No Airflow here.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import psycopg

from include.ingest.load import BUCKET, _delete, _move, file_lock_key, moved_key

log = logging.getLogger("include.ingest.recover")

DEFAULT_STUCK_AFTER = timedelta(minutes=30)
DEFAULT_MAX_ATTEMPTS = 5


@dataclass
class Recovered:
    file_id: str
    store_id: str
    filename: str
    action: str                        # 'pending' | 'failed' | 'alive' (a loader holds it: left)
    attempts: int
    claimed_at: datetime | None
    owner: str | None
    error_message: str | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["claimed_at"] = self.claimed_at.isoformat() if self.claimed_at else None
        return d


def stuck_candidates(conn: psycopg.Connection, stuck_after: timedelta = DEFAULT_STUCK_AFTER,
                     *, limit: int = 1000) -> list[tuple]:
    """(id, claimed_at) of the files in ``processing`` whose claim is older than ``stuck_after``
    (their loader may still be alive: see ``recover_stuck_files``)."""
    rows = conn.execute(
        """SELECT id, COALESCE(processing_started_at, upload_timestamp)
             FROM transaction_files
            WHERE processing_status = 'processing'
              AND COALESCE(processing_started_at, upload_timestamp) < now() - %s
            ORDER BY 2, id LIMIT %s""", (stuck_after, limit)).fetchall()
    conn.rollback()
    return rows


def recover_stuck_files(conn: psycopg.Connection, s3, *, bucket: str | None = None,
                        stuck_after: timedelta = DEFAULT_STUCK_AFTER,
                        max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> list[Recovered]:
    """Resets or fails the stuck files (see the module docstring); one ``Recovered`` per
    candidate, ``action='alive'`` for one whose loader is still alive (left as it is)."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    out = []
    for file_id, _claimed in stuck_candidates(conn, stuck_after):
        got = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                           (file_lock_key(file_id),)).fetchone()[0]
        conn.commit()
        if not got:
            row = conn.execute(
                """SELECT store_id, filename, processing_attempts, processing_started_at,
                          processing_owner FROM transaction_files WHERE id = %s""",
                (file_id,)).fetchone()
            conn.rollback()
            if row:
                log.info("file %s: claimed at %s by %s and its loader is still alive: left",
                         file_id, row[3], row[4])
                out.append(Recovered(str(file_id), str(row[0]), row[1], "alive", row[2], row[3],
                                     row[4]))
            continue
        try:
            rec = _decide(conn, s3, str(file_id), bucket, stuck_after, max_attempts)
        except BaseException:
            conn.rollback()
            raise
        finally:
            _unlock(conn, file_id)
        if rec is not None:
            out.append(rec)
    return out


def _unlock(conn: psycopg.Connection, file_id) -> None:
    if conn.closed or conn.broken:
        return
    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (file_lock_key(file_id),))
    conn.commit()


def _decide(conn: psycopg.Connection, s3, file_id: str, bucket: str | None,
            stuck_after: timedelta, max_attempts: int) -> Recovered | None:
    """Under the file's claim lock: re-reads the row (it may have moved on) and resets or fails
    it, committing the row, the activity log entry and (for failed) the object's copy."""
    row = conn.execute(
        """SELECT store_id, filename, processing_attempts,
                  COALESCE(processing_started_at, upload_timestamp), processing_owner,
                  s3_bucket, s3_key,
                  COALESCE(processing_started_at, upload_timestamp) < now() - %s
             FROM transaction_files WHERE id = %s AND processing_status = 'processing'
              FOR UPDATE""", (stuck_after, file_id)).fetchone()
    if row is None or not row[7]:                  # finished, or claimed again meanwhile
        conn.rollback()
        return None
    store_id, filename, attempts, claimed_at, owner, file_bucket, key, _old = row
    store_id = str(store_id)
    bucket = file_bucket or bucket or BUCKET
    by = f" by {owner}" if owner else ""
    when = claimed_at.isoformat(timespec="seconds")
    if attempts < max_attempts:
        action, status, activity = "pending", "pending", "transaction_file_recovered"
        message = (f"{filename}: processing was interrupted (attempt {attempts} of "
                   f"{max_attempts}, claimed at {when}{by}, the loader is gone); reset to "
                   f"pending and processed again by the next run")
        dst = key
    else:
        action, status, activity = "failed", "failed", "transaction_file_failed"
        message = (f"{filename}: processing was interrupted {attempts} times (last claimed at "
                   f"{when}{by}, the loader is gone) - not retried automatically after "
                   f"{max_attempts} attempts; nothing was loaded. Check the task logs (memory, "
                   f"worker restarts), then trigger ingest_transaction_files with param "
                   f"file={file_id} to try again")
        dst = moved_key("failed", store_id, file_id, key) if key else key
    moved = False
    if dst != key:
        try:
            _move(s3, bucket, key, dst)
            moved = True
        except Exception as e:  # noqa: BLE001 - the object is gone or S3 refused: it stays put
            code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
            if code not in ("NoSuchKey", "404", "NotFound"):
                raise
            log.warning("file %s: s3://%s/%s is missing; marked failed without moving it",
                        file_id, bucket, key)
            dst = key
    conn.execute(
        """UPDATE transaction_files SET processing_status = %s, error_message = %s, s3_key = %s
            WHERE id = %s""", (status, message, dst, file_id))
    rec = Recovered(file_id, store_id, filename, action, attempts, claimed_at, owner, message)
    conn.execute(
        """INSERT INTO activity_logs (store_id, action_type, action_description, resource_type,
                                      resource_id, additional_data)
           VALUES (%s, %s, %s, 'transaction_file', %s, %s::jsonb)""",
        (store_id, activity, message, file_id,
         json.dumps({**rec.as_dict(), "max_attempts": max_attempts,
                     "stuck_after_s": stuck_after.total_seconds(), "s3_key": dst})))
    conn.commit()
    if moved:
        _delete(s3, bucket, key, dst)
    log.warning("file %s: %s", file_id, message)
    from include.search.live import LiveFeed

    LiveFeed("ingest", file_id).update(phase=action, error_message=message, s3_key=dst)
    return rec
