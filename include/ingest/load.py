"""Loading one registered transaction file: claim -> download -> validate -> COPY -> move.

    result = ingest_file(conn, s3, file_id)      # conn: psycopg 3 connection, s3: boto3 S3 client

Guarantees (issue 5):

* **All or nothing per file.** Every row of a file is written by one ``COPY`` in one database
  transaction, fed chunk by chunk while the file is parsed (bounded memory); the status update,
  the metrics and the activity log entry commit with it. A crash anywhere before the commit leaves
  no row behind and the file in ``processing``, which ``ingest_file`` claims again on retry.
* **Claims.** A loader holds a session-level advisory lock on the file (``file_lock_key``) from
  before its claim (``processing``, ``processing_started_at``, ``processing_attempts`` + 1,
  ``processing_owner``; migration 0101) to its end; a second loader of the same file waits for it
  (``claim_wait_s``). A dead loader's connection frees the lock: ``recover.recover_stuck_files``
  uses that to find files stuck in ``processing``.
* **Loaded once.** The content's SHA-256 is compared with the store's loaded files inside the load
  transaction, under an advisory lock per (store, checksum); the partial unique index of migration
  0100 backs it up. A second upload of the same content is recorded as a duplicate
  (``completed``, ``duplicate_of`` set, nothing loaded).
* **Where files go.** ``incoming/<store_id>/<name>`` -> ``processed/<store_id>/<name>`` or
  ``failed/<store_id>/<name>``; rejected transactions -> ``rejected/<store_id>/<name>.csv``.
  ``<name>`` is ``<file_id>_<original name>`` (the upload command names objects that way; a file
  dropped into the bucket by other means gets the prefix when it moves). The object is copied
  before the commit and the source deleted after it: an object left in ``incoming/`` by a crash in
  between is registered again by discovery and then recognised as a duplicate.
* **Live progress** in Redis, ``<ns>:progress:ingest:<file_id>`` (``include.search.live.LiveFeed``):
  ``phase`` (downloading, validating, loading, completed/failed/duplicate, or interrupted),
  ``store_id``, ``filename``, ``rows_read``/``rows_loaded``/``rows_rejected``, ``items_read``,
  ``bytes``, ``seconds``. Best effort: Redis being down logs one warning, never fails a file.

No Airflow here: the DAG passes the hooks' connection and client.
"""
from __future__ import annotations

import csv
import gc
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from decimal import Decimal, localcontext
from queue import Queue
from typing import Callable

import psycopg
from psycopg.copy import QueuedLibpqWriter

from include.ingest.formats import (FileError, RawTransaction, RowError, Transaction,
                                    exact_context, iter_raw, merge_items)

log = logging.getLogger("include.ingest.load")

BUCKET = "platform-data"
DEFAULT_MAX_REJECT_SHARE = 0.05
DEFAULT_CHUNK_ITEMS = 100_000          # items (CSV lines) validated and COPYed per chunk
DEFAULT_CLAIM_WAIT_S = 60.0            # wait for another live loader of the same file
METRIC_TYPE = "ingestion"
COPY_SQL = ("COPY transactions (store_id, file_id, transaction_date, items, quantities, "
            "unit_utilities, total_utility) FROM STDIN")
REJECTS_HEADER = ("line", "transaction_id", "field", "message")


@dataclass
class IngestResult:
    file_id: str
    store_id: str | None = None
    filename: str | None = None
    status: str = "skipped"            # completed | failed | duplicate | skipped
    rows_read: int = 0                 # transactions read (loaded + rejected)
    rows_loaded: int = 0
    rows_rejected: int = 0
    items_read: int = 0                # CSV lines / JSON array entries
    bytes: int = 0
    seconds: float = 0.0
    error_message: str | None = None
    s3_key: str | None = None
    rejects_key: str | None = None
    duplicate_of: str | None = None
    content_sha256: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class _TooManyRejected(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# keys
def object_name(file_id, key: str) -> str:
    """``<file_id>_<original name>`` for an object key."""
    base = key.rsplit("/", 1)[-1]
    prefix = f"{file_id}_"
    return base if base.startswith(prefix) else prefix + base


def moved_key(area: str, store_id, file_id, key: str) -> str:
    return f"{area}/{store_id}/{object_name(file_id, key)}"


def rejects_key(store_id, file_id, key: str) -> str:
    return f"rejected/{store_id}/{object_name(file_id, key)}.csv"


# ----------------------------------------------------------------------------------------------
# COPY text format
def _array_text(values) -> str:
    return "{" + ",".join(values) + "}"


def _item_text(s: str) -> str:
    """An array element for COPY text: array quoting, then COPY's own escapes."""
    if "\\" in s or '"' in s or "\t" in s or "\n" in s or "\r" in s:
        s = s.replace("\\", "\\\\").replace('"', '\\"')
        s = s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return '"' + s + '"'


class _RowFormatter:
    """Lines of COPY text format for ``transactions``."""

    def __init__(self, store_id, file_id):
        self.prefix = f"{store_id}\t{file_id}\t"
        self.dates: dict[datetime, str] = {}

    def _date(self, dt: datetime) -> str:
        d = self.dates.get(dt)
        if d is None:
            d = dt.isoformat()
            if len(self.dates) > 10_000:
                self.dates.clear()
            self.dates[dt] = d
        return d

    def line(self, t: Transaction) -> str:
        return (self.prefix + self._date(t.transaction_date) + "\t"
                + _array_text(map(_item_text, t.items)) + "\t"
                + _array_text(map(str, t.quantities)) + "\t"
                + _array_text(map(str, t.unit_utilities)) + "\t" + str(t.total_utility) + "\n")

    def raw_line(self, t: RawTransaction, names: list[str]) -> str:
        """The line of a raw transaction without repeated items (``names``: its trimmed items).
        Call inside ``localcontext(exact_context())``: the total is summed with operators."""
        total = _ZERO
        for e in t.entries:
            total += e[1] * e[2]
        return (self.prefix + self._date(t.transaction_date) + "\t{"
                + ",".join([_item_text(n) for n in names]) + "}\t{"
                + ",".join([str(e[1]) for e in t.entries]) + "}\t{"
                + ",".join([str(e[2]) for e in t.entries]) + "}\t" + str(total) + "\n")


_ZERO = Decimal(0)


class _BoundedQueuedWriter(QueuedLibpqWriter):
    """psycopg's threaded COPY writer (a thread sends while this one parses the next chunk, so
    the server's work overlaps ours) with a smaller queue: at most 128 buffers of 128 KiB
    (16 MiB) wait to be sent, instead of 1024 (128 MiB) when the server is the slower side."""

    def __init__(self, cursor):
        super().__init__(cursor)
        self._queue = Queue(maxsize=128)


# ----------------------------------------------------------------------------------------------
# database steps (the caller's connection; this module commits where the contract says so)
def file_lock_key(file_id) -> str:
    """The text whose ``hashtextextended`` is the advisory lock key of a file's loader."""
    return f"ingest_file:{file_id}"


def _lock_file(conn: psycopg.Connection, file_id, wait_s: float) -> bool:
    """Takes the session-level advisory lock of the file (held while a loader works on it: its
    connection dying frees it, which is how ``recover`` tells a live loader from a dead one);
    waits up to ``wait_s`` for another holder. False when it is still held."""
    conn.execute(f"SET lock_timeout = {max(1, int(wait_s * 1000))}")
    try:
        conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (file_lock_key(file_id),))
    except psycopg.errors.LockNotAvailable:
        conn.rollback()                             # (the SET with it)
        return False
    conn.execute("RESET lock_timeout")
    conn.commit()
    return True


def _unlock_file(conn: psycopg.Connection, file_id) -> None:
    try:
        if conn.closed or conn.broken:
            return                                  # the session is gone, and its lock with it
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))",
                     (file_lock_key(file_id),))
        conn.commit()
    except Exception as e:  # noqa: BLE001 - the lock ends with the session anyway
        log.warning("file %s: could not release the claim lock: %s", file_id, e)


def _claim(conn: psycopg.Connection, file_id, retry_failed: bool, owner: str):
    """pending/processing (and failed when ``retry_failed``) -> processing, one more attempt (a
    retry by hand from failed starts counting again); the file's row, or None."""
    states = ("pending", "processing", "failed") if retry_failed else ("pending", "processing")
    row = conn.execute(
        """UPDATE transaction_files
              SET processing_status = 'processing', error_message = NULL,
                  processing_started_at = now(), processing_owner = %s,
                  processing_attempts = CASE WHEN processing_status = 'failed' THEN 1
                                             ELSE processing_attempts + 1 END
            WHERE id = %s AND processing_status = ANY(%s)
        RETURNING store_id, filename, file_size, file_type, s3_bucket, s3_key, content_sha256""",
        (owner[:500], file_id, list(states))).fetchone()
    conn.commit()
    return row


def _record(conn: psycopg.Connection, r: IngestResult, action: str, description: str) -> None:
    meta = json.dumps({"file_id": r.file_id, "filename": r.filename, "s3_key": r.s3_key,
                       "status": r.status})
    rows = [("rows_read", r.rows_read), ("rows_loaded", r.rows_loaded),
            ("rows_rejected", r.rows_rejected), ("items_read", r.items_read),
            ("bytes", r.bytes), ("seconds", round(r.seconds, 3))]
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO performance_metrics (metric_type, metric_name, metric_value, store_id,
                                                metadata)
               VALUES (%s, %s, %s, %s, %s::jsonb)""",
            [(METRIC_TYPE, name, Decimal(str(v)), r.store_id, meta) for name, v in rows])
        cur.execute(
            """INSERT INTO activity_logs (store_id, action_type, action_description, resource_type,
                                          resource_id, additional_data)
               VALUES (%s, %s, %s, 'transaction_file', %s, %s::jsonb)""",
            (r.store_id, action, description, r.file_id,
             json.dumps({k: v for k, v in r.as_dict().items() if k != "store_id"})))


def _finish(conn, r: IngestResult, status: str, *, duplicate_of=None) -> None:
    conn.execute(
        """UPDATE transaction_files
              SET processing_status = %s, error_message = %s, s3_key = %s,
                  content_sha256 = COALESCE(%s, content_sha256), duplicate_of = %s
            WHERE id = %s""",
        (status, r.error_message, r.s3_key, r.content_sha256, duplicate_of, r.file_id))


# ----------------------------------------------------------------------------------------------
def _download(s3, bucket: str, key: str, path: str) -> tuple[int, str]:
    """Streams the object to ``path``; (size, sha256 hex)."""
    h = hashlib.sha256()
    size = 0
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with open(path, "wb") as f:
        while True:
            data = body.read(8 << 20)
            if not data:
                break
            h.update(data)
            f.write(data)
            size += len(data)
    return size, h.hexdigest()


def _move(s3, bucket: str, src: str, dst: str) -> None:
    if src != dst:
        s3.copy_object(Bucket=bucket, Key=dst, CopySource={"Bucket": bucket, "Key": src})


def _delete(s3, bucket: str, src: str, dst: str) -> None:
    if src != dst:
        try:
            s3.delete_object(Bucket=bucket, Key=src)
        except Exception as e:  # the object stays; discovery will find it a duplicate
            log.warning("could not delete s3://%s/%s after the move: %s", bucket, src, e)


def _summary(rejected: int, total: int, first: RowError | None) -> str | None:
    if not rejected:
        return None
    pct = 100.0 * rejected / total if total else 100.0
    where = f"; first: line {first.line}, {first.field}: {first.message}" if first else ""
    return f"{rejected} of {total} transactions rejected ({pct:.2f}%){where}"


def ingest_file(conn: psycopg.Connection, s3, file_id, *, bucket: str | None = None,
                max_reject_share: float = DEFAULT_MAX_REJECT_SHARE,
                chunk_items: int = DEFAULT_CHUNK_ITEMS, validator=None,
                retry_failed: bool = False, workdir: str | None = None,
                after_chunk: Callable[[int], None] | None = None, live=None,
                owner: str | None = None,
                claim_wait_s: float = DEFAULT_CLAIM_WAIT_S) -> IngestResult:
    """Ingests the registered file ``file_id``; see the module docstring.

    ``validator``: a ``validate.ContractValidator`` (built here when None; building one costs the
    great-expectations import). ``retry_failed``: also process a file in ``failed`` (manual
    trigger). ``after_chunk(n)``: called after the n-th chunk was written to COPY (tests inject
    crashes there). ``live``: where progress goes, default ``LiveFeed("ingest", file_id)``
    (``include.search.live``: Redis of connection ``platform_redis``, namespace
    ``PLATFORM_REDIS_NAMESPACE``; best effort, Redis errors never fail the ingestion).
    ``owner``: recorded as ``processing_owner`` (default ``host:pid``).
    ``claim_wait_s``: how long to wait for another live loader of the same file to finish.

    Returns the result; raises only for infrastructure errors (database, S3), which leave the
    file in ``processing`` for the retry (or for ``recover.recover_stuck_files``).
    """
    t0 = time.monotonic()
    file_id = str(file_id)
    r = IngestResult(file_id)
    if live is None:
        from include.search.live import LiveFeed

        live = LiveFeed("ingest", file_id)
    if not _lock_file(conn, file_id, claim_wait_s):
        r.error_message = (f"file {file_id} is being processed by another loader (its claim "
                           f"lock was held for {claim_wait_s:g} s): nothing to do")
        log.warning(r.error_message)
        return r
    try:
        row = _claim(conn, file_id, retry_failed, owner or f"{socket.gethostname()}:{os.getpid()}")
        if row is None:
            st = conn.execute("SELECT processing_status FROM transaction_files WHERE id = %s",
                              (file_id,)).fetchone()
            conn.rollback()
            if st is None:
                raise LookupError(f"transaction_files has no row {file_id}")
            r.error_message = f"file {file_id} is {st[0]}: nothing to do"
            log.info(r.error_message)
            return r
        try:
            _ingest_claimed(conn, s3, r, row, bucket=bucket, max_reject_share=max_reject_share,
                            chunk_items=chunk_items, validator=validator, workdir=workdir,
                            after_chunk=after_chunk, live=live, t0=t0)
        except BaseException as e:
            live.update(phase="interrupted", store_id=r.store_id, filename=r.filename,
                        error_message=f"{type(e).__name__}: {e}"[:500],
                        seconds=round(time.monotonic() - t0, 3))
            raise
        live.update(phase=r.status, store_id=r.store_id, filename=r.filename,
                    rows_read=r.rows_read, rows_loaded=r.rows_loaded,
                    rows_rejected=r.rows_rejected, items_read=r.items_read, bytes=r.bytes,
                    seconds=round(r.seconds, 3), error_message=r.error_message,
                    s3_key=r.s3_key, duplicate_of=r.duplicate_of)
        return r
    finally:
        _unlock_file(conn, file_id)


def _ingest_claimed(conn, s3, r: IngestResult, row, *, bucket, max_reject_share, chunk_items,
                    validator, workdir, after_chunk, live, t0) -> IngestResult:
    """The work on a claimed file (fills ``r``); see ``ingest_file``."""
    file_id = r.file_id
    store_id, filename, _size, file_type, file_bucket, key, known_sha = row
    r.store_id, r.filename, r.s3_key = str(store_id), filename, key
    live.update(phase="downloading", file_id=file_id, store_id=r.store_id, filename=filename,
                file_type=file_type, started_at=datetime.now(timezone.utc))
    bucket = file_bucket or bucket or BUCKET
    if validator is None:
        from include.ingest.validate import ContractValidator
        validator = ContractValidator()

    tmpdir = tempfile.mkdtemp(prefix="ingest-", dir=workdir)
    try:
        data_path = os.path.join(tmpdir, "data")
        try:
            r.bytes, r.content_sha256 = _download(s3, bucket, key, data_path)
        except Exception as e:
            code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
            if code not in ("NoSuchKey", "404", "NotFound"):
                raise                                   # S3 trouble: the task's retry
            return _fail(conn, s3, bucket, r, key, f"{filename}: the object s3://{bucket}/{key} "
                         "does not exist", t0, move=False)
        if known_sha and known_sha != r.content_sha256:
            log.warning("file %s: content checksum %s differs from the one registered at upload "
                        "(%s); using the content's", file_id, r.content_sha256, known_sha)
        log.info("file %s (%s, %s, %d bytes): s3://%s/%s", file_id, filename, file_type, r.bytes,
                 bucket, key)

        # file-level suite
        live.update(phase="validating", bytes=r.bytes)
        from include.ingest.validate import file_facts
        store = conn.execute("SELECT is_active FROM stores WHERE id = %s", (store_id,)).fetchone()
        conn.rollback()
        facts = file_facts(data_path, file_type, store_id=str(store_id),
                           store_known=bool(store and store[0]), filename=filename)
        err = validator.validate_file(facts)
        if err is not None:
            return _fail(conn, s3, bucket, r, key, str(err), t0)

        # the load transaction: own row locked (a concurrent loader of the same file waits, then
        # finds it done), one content of a store loaded by one transaction at a time
        st = conn.execute("SELECT processing_status FROM transaction_files WHERE id = %s "
                          "FOR UPDATE", (file_id,)).fetchone()
        if st is None or st[0] != "processing":
            conn.rollback()
            r.error_message = f"file {file_id} is {st[0] if st else 'gone'}: nothing to do"
            return r
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                     (f"transaction_files:{store_id}:{r.content_sha256}",))
        dup = conn.execute(
            """SELECT id FROM transaction_files
                WHERE store_id = %s AND content_sha256 = %s AND processing_status = 'completed'
                  AND duplicate_of IS NULL AND id <> %s""",
            (store_id, r.content_sha256, file_id)).fetchone()
        if dup is not None:
            return _duplicate(conn, s3, bucket, r, key, str(dup[0]), t0)
        rejects_path = os.path.join(tmpdir, "rejects.csv")
        try:
            live.update(phase="loading")
            first_reject = _load(conn, r, data_path, file_type, filename, store_id, validator,
                                 rejects_path, chunk_items, max_reject_share, after_chunk, t0,
                                 live)
        except FileError as e:
            conn.rollback()
            return _fail(conn, s3, bucket, r, key, str(e), t0)
        except _TooManyRejected as e:
            conn.rollback()
            rkey = rejects_key(store_id, file_id, key)
            s3.upload_file(rejects_path, bucket, rkey)
            r.rejects_key = rkey
            return _fail(conn, s3, bucket, r, key, str(e), t0)
        r.error_message = _summary(r.rows_rejected, r.rows_read, first_reject)
        if r.rows_rejected:
            r.rejects_key = rejects_key(store_id, file_id, key)
            s3.upload_file(rejects_path, bucket, r.rejects_key)
            r.error_message += f" (all reasons: s3://{bucket}/{r.rejects_key})"
        dst = moved_key("processed", store_id, file_id, key)
        r.status, r.s3_key = "completed", dst
        r.seconds = time.monotonic() - t0
        _finish(conn, r, "completed")
        _record(conn, r, "transaction_file_ingested",
                f"{filename}: {r.rows_loaded} transactions loaded, {r.rows_rejected} rejected")
        _move(s3, bucket, key, dst)
        conn.commit()
        _delete(s3, bucket, key, dst)
        log.info("file %s completed: %d transactions loaded, %d rejected, %.1f s", file_id,
                 r.rows_loaded, r.rows_rejected, r.seconds)
        return r
    except BaseException:
        try:
            conn.rollback()
        except Exception:
            pass
        raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def copy_file(conn: psycopg.Connection, path: str, file_type: str, *, store_id, file_id,
              validator, filename: str | None = None, rejects_path: str = os.devnull,
              chunk_items: int = DEFAULT_CHUNK_ITEMS, max_reject_share: float = 1.0,
              after_chunk: Callable[[int], None] | None = None) -> IngestResult:
    """Parse + validate + COPY of a local file inside the caller's transaction (no commit, no
    status change): the core of ``ingest_file``, used by the benchmark. Raises ``FileError``."""
    r = IngestResult(str(file_id), str(store_id), filename or os.path.basename(path))
    _load(conn, r, path, file_type, r.filename, store_id, validator, rejects_path, chunk_items,
          max_reject_share, after_chunk, time.monotonic())
    return r


def _load(conn, r: IngestResult, path, file_type, filename, store_id, validator, rejects_path,
          chunk_items, max_reject_share, after_chunk, t0,
          live=None) -> RowError | None:
    with _collect_per_chunk():
        return _load_chunks(conn, r, path, file_type, filename, store_id, validator, rejects_path,
                            chunk_items, max_reject_share, after_chunk, t0, live)


@contextmanager
def _collect_per_chunk():
    """The cyclic garbage collector paused while files load, and run on the young generations
    after each chunk (``_load_chunks`` calls ``gc.collect(1)``) instead: the parser's records
    hold no cycles and are freed by reference counting, but every one of them would be scanned
    by the hundreds of automatic collections a chunk triggers (15 % of the CPU time). Loads in
    several threads: the collector is enabled again when the last one ends (if it was before)."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = True


def _load_chunks(conn, r: IngestResult, path, file_type, filename, store_id, validator,
                 rejects_path, chunk_items, max_reject_share, after_chunk, t0,
                 live) -> RowError | None:
    from include.ingest.validate import ValueVerdicts

    fmt = _RowFormatter(store_id, r.file_id)
    verdicts = ValueVerdicts()             # each distinct value judged by the suite once per file
    first_reject: RowError | None = None
    chunks = 0
    with open(rejects_path, "w", newline="", encoding="utf-8") as rf, conn.cursor() as cur, \
            cur.copy(COPY_SQL, writer=_BoundedQueuedWriter(cur)) as copy:
        rejects = csv.writer(rf)
        rejects.writerow(REJECTS_HEADER)
        pending: list[RawTransaction] = []
        n_items = 0

        def reject(e: RowError) -> None:
            nonlocal first_reject
            if first_reject is None:
                first_reject = e
            r.rows_rejected += 1
            rejects.writerow((e.line, e.transaction_id or "", e.field, e.message))

        def flush() -> None:
            nonlocal chunks, n_items
            if not pending:
                return
            out: list[str] = []
            errors = validator.validate_chunk(pending, verdicts)
            with localcontext(exact_context()):
                for t, err in zip(pending, errors):
                    if err is not None:
                        reject(err)
                        continue
                    names = [e[0].strip() for e in t.entries]
                    if len(set(names)) == len(names):
                        out.append(fmt.raw_line(t, names))
                    else:
                        m = merge_items(t)
                        if m.__class__ is RowError:
                            reject(m)
                            continue
                        out.append(fmt.line(m))
                    r.rows_loaded += 1
            if out:
                copy.write("".join(out).encode("utf-8"))
            pending.clear()
            n_items = 0
            chunks += 1
            gc.collect(1)
            el = time.monotonic() - t0
            log.info("file %s: chunk %d, %d items read, %d transactions loaded, %d rejected, "
                     "%.1f s", r.file_id, chunks, r.items_read, r.rows_loaded, r.rows_rejected, el)
            if live is not None:
                live.update(phase="loading", chunks=chunks, rows_read=r.rows_read,
                            rows_loaded=r.rows_loaded, rows_rejected=r.rows_rejected,
                            items_read=r.items_read, seconds=round(el, 3))
            if after_chunk is not None:
                after_chunk(chunks)

        for rec in iter_raw(path, file_type, filename=filename):
            if rec.__class__ is RowError:
                reject(rec)
                r.rows_read += 1
                continue
            pending.append(rec)
            r.rows_read += 1
            n = rec.n_entries
            r.items_read += n
            n_items += n
            if n_items >= chunk_items:
                flush()
        flush()
        if r.rows_read and r.rows_rejected > max_reject_share * r.rows_read:
            raise _TooManyRejected(
                f"{r.rows_rejected} of {r.rows_read} transactions rejected "
                f"({100.0 * r.rows_rejected / r.rows_read:.2f}%), more than the allowed "
                f"{100.0 * max_reject_share:g}%: nothing loaded"
                + (f"; first: line {first_reject.line}, {first_reject.field}: "
                   f"{first_reject.message}" if first_reject else ""))
    return first_reject


def _fail(conn, s3, bucket, r: IngestResult, key, message: str, t0, *,
          move: bool = True) -> IngestResult:
    r.rows_loaded = 0
    r.status, r.error_message = "failed", message
    dst = moved_key("failed", r.store_id, r.file_id, key) if move else key
    r.s3_key = dst
    r.seconds = time.monotonic() - t0
    _finish(conn, r, "failed")
    _record(conn, r, "transaction_file_failed", f"{r.filename}: {message}")
    _move(s3, bucket, key, dst)
    conn.commit()
    _delete(s3, bucket, key, dst)
    log.warning("file %s failed: %s", r.file_id, message)
    return r


def _duplicate(conn, s3, bucket, r: IngestResult, key, original: str, t0) -> IngestResult:
    r.status, r.duplicate_of = "duplicate", original
    r.error_message = (f"duplicate: the same content (sha256 {r.content_sha256}) was loaded from "
                       f"file {original}; nothing loaded")
    dst = moved_key("processed", r.store_id, r.file_id, key)
    r.s3_key = dst
    r.seconds = time.monotonic() - t0
    _finish(conn, r, "completed", duplicate_of=original)
    _record(conn, r, "transaction_file_duplicate", f"{r.filename}: {r.error_message}")
    _move(s3, bucket, key, dst)
    conn.commit()
    _delete(s3, bucket, key, dst)
    log.info("file %s is a duplicate of %s", r.file_id, original)
    return r
