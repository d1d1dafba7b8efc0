"""Archive old rows to the bucket as Parquet (zstd), prove the copy, then delete: crash-safe.

One archive run of a table (``archive_table``):

1. **recover**: an earlier run that did not commit (state ``pending``/``written``) is *abandoned*: its
   files are deleted from the bucket; its rows were never deleted, so they are simply archived again.
2. **write**: the rows before the cutoff are read in one snapshot, grouped by store and UTC month, and
   written to ``archive/<table>/store_id=<id>/year=<y>/month=<m>/part-<manifest id>.parquet``. Each file
   is recorded in ``archive_files`` (sha256, rows) *before* its upload, so a crash never leaves an
   unrecorded object. The manifest JSON (table, time range, row count, sha256 per file) goes to
   ``archive/<table>/_manifests/<manifest id>.json``; the manifest row becomes ``written``.
3. **read back**: every file is downloaded again; its sha256 and row count must equal the record.
   The keys (``id``, time) of the delete come from these read-back files, never from memory.
4. **commit**: in *one* database transaction, the archived rows are deleted (whole monthly partitions
   whose every row is in the archive are dropped instead) and the manifest is marked ``committed``.
   If the number of rows removed differs from the manifest's, the transaction is rolled back.

A crash before 4 leaves the rows and (some of) the files: the next run abandons the files and archives
the rows once. A crash after 4 leaves the archive only. Nothing is lost and, among committed
manifests, nothing is archived twice. ``crash_at`` (or env ``RETAIN_CRASH_AT``) kills the process at
a named point, for the tests.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import psycopg
from psycopg import sql

from include.retain import parquet as pqx

log = logging.getLogger("include.retain.archive")

CRASH_POINTS = ("after_write", "after_verify", "before_commit", "after_commit")
ARCHIVE_PREFIX = "archive"


@dataclass(frozen=True)
class TableSpec:
    name: str
    time_column: str
    timeseries: bool   # a table of migration 0002 (native partitions or a hypertable)


ARCHIVED_TABLES = {
    "transactions": TableSpec("transactions", "transaction_date", False),
    "activity_logs": TableSpec("activity_logs", "created_at", True),
}


def table_spec(table: str) -> TableSpec:
    try:
        return ARCHIVED_TABLES[table]
    except KeyError:
        raise ValueError(f"--table must be one of {sorted(ARCHIVED_TABLES)}, got {table!r}") from None


@dataclass
class ArchiveResult:
    table: str
    cutoff: str
    manifest_id: str | None = None
    rows: int = 0
    bytes: int = 0
    files: int = 0
    partitions_dropped: list[str] = field(default_factory=list)
    abandoned_manifests: list[str] = field(default_factory=list)
    range_start: str | None = None
    range_end: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ArchiveError(RuntimeError):
    """An archive run could not prove or commit its copy; the rows are still in the database."""


class S3Store:
    """The few S3 calls the archive needs, over a boto3 client (from S3Hook or include.connections)."""

    def __init__(self, client, bucket: str):
        self.client, self.bucket = client, bucket

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            chunk = keys[i:i + 1000]
            if chunk:
                self.client.delete_objects(Bucket=self.bucket,
                                           Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})

    def list(self, prefix: str) -> list[str]:
        keys, token = [], None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            r = self.client.list_objects_v2(**kw)
            keys += [o["Key"] for o in r.get("Contents", [])]
            if not r.get("IsTruncated"):
                return keys
            token = r["NextContinuationToken"]


def _maybe_crash(point: str, crash_at: str | None) -> None:
    wanted = crash_at or os.environ.get("RETAIN_CRASH_AT")
    if wanted == point:
        log.error("RETAIN_CRASH_AT=%s: killing the process here (test of crash safety)", point)
        os._exit(70)


def file_key(table: str, store_id: str | None, year: int, month: int, manifest_id: str) -> str:
    return (f"{ARCHIVE_PREFIX}/{table}/store_id={store_id or 'none'}/year={year:04d}/month={month:02d}/"
            f"part-{manifest_id}.parquet")


def manifest_key(table: str, manifest_id: str) -> str:
    return f"{ARCHIVE_PREFIX}/{table}/_manifests/{manifest_id}.json"


def _lock_key(table: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(f"platform.retain.{table}".encode()).digest()[:8], "big", signed=True)


def abandon_open_manifests(conn: psycopg.Connection, store: S3Store, table: str) -> list[str]:
    """Delete the files of this table's uncommitted manifests and mark them abandoned (autocommit conn)."""
    out = []
    for (mid, mkey) in conn.execute(
            "SELECT id, manifest_key FROM archive_manifests WHERE table_name = %s AND status IN ('pending', 'written')"
            " ORDER BY created_at", (table,)).fetchall():
        keys = [r[0] for r in conn.execute("SELECT s3_key FROM archive_files WHERE manifest_id = %s", (mid,))]
        store.delete(keys + ([mkey] if mkey else []))
        conn.execute("UPDATE archive_manifests SET status = 'abandoned', error_message = COALESCE(error_message, "
                     "'not committed: files removed by a later run, rows were kept') WHERE id = %s", (mid,))
        log.warning("%s: abandoned uncommitted archive %s (%d files removed, rows were never deleted)",
                    table, mid, len(keys))
        out.append(str(mid))
    return out


def archive_table(dsn: str, store: S3Store, table: str, cutoff: datetime, *, as_of: date,
                  run_id: uuid.UUID | None = None, batch_size: int = 5000,
                  crash_at: str | None = None) -> ArchiveResult:
    """Archive and remove the rows of ``table`` whose time is before ``cutoff`` (see module doc)."""
    spec = table_spec(table)
    run_id = run_id or uuid.uuid4()
    t0 = time.monotonic()
    res = ArchiveResult(table=table, cutoff=cutoff.isoformat())
    with psycopg.connect(dsn, autocommit=True, application_name="retain_archive") as meta:
        if not meta.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(table),)).fetchone()[0]:
            raise ArchiveError(f"another retention run is archiving {table}; try again when it has finished")
        try:
            res.abandoned_manifests = abandon_open_manifests(meta, store, table)
            manifest_id = _write(dsn, meta, store, spec, cutoff, as_of, run_id, batch_size, res, crash_at)
            if manifest_id is None:
                res.seconds = round(time.monotonic() - t0, 3)
                log.info("%s: nothing before %s", table, cutoff.isoformat())
                return res
            _maybe_crash("after_write", crash_at)
            keys = _verify(meta, store, spec, manifest_id, res)
            _maybe_crash("after_verify", crash_at)
            _commit(dsn, spec, manifest_id, cutoff, keys, res, crash_at)
            _maybe_crash("after_commit", crash_at)
        finally:
            if not meta.closed:
                meta.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(table),))
    res.seconds = round(time.monotonic() - t0, 3)
    log.info("%s: archived and removed %d rows (%d files, %d bytes) before %s in %.1fs; partitions dropped: %s",
             table, res.rows, res.files, res.bytes, cutoff.isoformat(), res.seconds, res.partitions_dropped or "-")
    return res


def _write(dsn, meta, store, spec, cutoff, as_of, run_id, batch_size, res, crash_at) -> uuid.UUID | None:
    table, tcol = spec.name, spec.time_column
    with psycopg.connect(dsn, application_name="retain_archive_read") as rconn:
        rconn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        n = rconn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} < %s").format(
            sql.Identifier(table), sql.Identifier(tcol)), (cutoff,)).fetchone()[0]
        if n == 0:
            return None
        columns = pqx.table_columns(rconn, table)
        names = [c.name for c in columns]
        i_store, i_time = names.index("store_id"), names.index(tcol)
        manifest_id = meta.execute(
            """INSERT INTO archive_manifests (run_id, table_name, as_of, cutoff, bucket)
               VALUES (%s, %s, %s, %s, %s) RETURNING id""",
            (run_id, table, as_of, cutoff, store.bucket)).fetchone()[0]
        res.manifest_id = str(manifest_id)
        files: list[dict[str, Any]] = []
        group_key, group_rows = None, []

        def flush():
            if not group_rows:
                return
            sid, y, m = group_key
            data = pqx.to_parquet_bytes(columns, group_rows, {
                "platform.table": table, "platform.manifest_id": str(manifest_id), "platform.store_id": sid or "",
                "platform.cutoff": cutoff.isoformat()})
            f = {"s3_key": file_key(table, sid, y, m, str(manifest_id)), "store_id": sid, "year": y, "month": m,
                 "row_count": len(group_rows), "bytes": len(data), "sha256": pqx.sha256(data),
                 "min_time": min(r[i_time] for r in group_rows), "max_time": max(r[i_time] for r in group_rows)}
            meta.execute(
                """INSERT INTO archive_files (manifest_id, s3_key, store_id, year, month, row_count, bytes, sha256,
                                              min_time, max_time)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (manifest_id, f["s3_key"], f["store_id"], y, m, f["row_count"], f["bytes"], f["sha256"],
                 f["min_time"], f["max_time"]))
            store.put(f["s3_key"], data, "application/vnd.apache.parquet")
            files.append(f)

        q = sql.SQL("SELECT {} FROM {} WHERE {} < %s ORDER BY store_id NULLS FIRST, {}, id").format(
            pqx.select_list(columns), sql.Identifier(table), sql.Identifier(tcol), sql.Identifier(tcol))
        with rconn.cursor(name="retain_archive_rows") as cur:
            cur.itersize = batch_size
            cur.execute(q, (cutoff,))
            for row in cur:
                t = row[i_time].astimezone(timezone.utc)
                key = (row[i_store], t.year, t.month)
                if key != group_key:
                    flush()
                    group_key, group_rows = key, []
                group_rows.append(row)
            flush()
        rconn.rollback()

    total = sum(f["row_count"] for f in files)
    if total != n:
        raise ArchiveError(f"{table}: read {total} rows but counted {n} in the same snapshot")
    res.rows, res.files, res.bytes = total, len(files), sum(f["bytes"] for f in files)
    res.range_start = min(f["min_time"] for f in files).isoformat()
    res.range_end = max(f["max_time"] for f in files).isoformat()
    doc = {"manifest_id": str(manifest_id), "run_id": str(run_id), "table": table, "as_of": as_of.isoformat(),
           "cutoff": cutoff.isoformat(), "time_column": tcol, "range_start": res.range_start,
           "range_end": res.range_end, "row_count": total, "bytes": res.bytes, "format": "parquet",
           "compression": pqx.COMPRESSION,
           "files": [{"key": f["s3_key"], "store_id": f["store_id"], "year": f["year"], "month": f["month"],
                      "rows": f["row_count"], "bytes": f["bytes"], "sha256": f["sha256"],
                      "min_time": f["min_time"].isoformat(), "max_time": f["max_time"].isoformat()}
                     for f in files]}
    mkey = manifest_key(table, str(manifest_id))
    store.put(mkey, json.dumps(doc, indent=1).encode(), "application/json")
    meta.execute(
        """UPDATE archive_manifests SET status = 'written', written_at = now(), manifest_key = %s, row_count = %s,
                  bytes = %s, range_start = %s, range_end = %s WHERE id = %s AND status = 'pending'""",
        (mkey, total, res.bytes, res.range_start, res.range_end, manifest_id))
    return manifest_id


def _verify(meta, store, spec, manifest_id, res) -> list[tuple[str, datetime]]:
    """Download every file again: sha256 and row count must match; returns the (id, time) keys read back."""
    keys: list[tuple[str, datetime]] = []
    files = meta.execute("SELECT s3_key, row_count, sha256 FROM archive_files WHERE manifest_id = %s ORDER BY s3_key",
                         (manifest_id,)).fetchall()
    for key, rows, digest in files:
        data = store.get(key)
        got = pqx.sha256(data)
        if got != digest.strip():
            raise ArchiveError(f"{key}: read back sha256 {got[:12]}... differs from the written {digest[:12]}...")
        t = pqx.read_parquet_bytes(data)
        if t.num_rows != rows:
            raise ArchiveError(f"{key}: read back {t.num_rows} rows, wrote {rows}")
        keys += list(zip(t.column("id").to_pylist(), t.column(spec.time_column).to_pylist()))
    if len(keys) != res.rows:
        raise ArchiveError(f"{spec.name}: read back {len(keys)} rows in total, manifest says {res.rows}")
    return keys


def _commit(dsn, spec, manifest_id, cutoff, keys, res, crash_at) -> None:
    table, tcol = spec.name, spec.time_column
    with psycopg.connect(dsn, application_name="retain_archive_commit") as conn:
        conn.execute("CREATE TEMP TABLE retain_keys (id uuid NOT NULL, t timestamptz NOT NULL) ON COMMIT DROP")
        with conn.cursor().copy("COPY retain_keys (id, t) FROM STDIN") as cp:
            for k in keys:
                cp.write_row(k)
        conn.execute("ANALYZE retain_keys")
        removed, dropped = 0, []
        if spec.timeseries:
            removed, dropped = drop_archived_partitions(conn, table, cutoff)
        cur = conn.execute(sql.SQL("DELETE FROM {t} x USING retain_keys k WHERE x.id = k.id AND x.{c} = k.t").format(
            t=sql.Identifier(table), c=sql.Identifier(tcol)))
        removed += cur.rowcount
        if removed != res.rows:
            conn.rollback()
            raise ArchiveError(f"{table}: would remove {removed} rows but the archive holds {res.rows}; "
                               "rolled back (rows changed meanwhile?): the next run archives them again")
        if spec.timeseries:
            dropped += drop_empty_partitions_before(conn, table, cutoff)
        conn.execute("""UPDATE archive_manifests SET status = 'committed', committed_at = now(), partitions_dropped = %s
                         WHERE id = %s AND status = 'written'""", (dropped, manifest_id))
        _maybe_crash("before_commit", crash_at)
        conn.commit()
    res.partitions_dropped = dropped


def drop_archived_partitions(conn: psycopg.Connection, table: str, cutoff: datetime) -> tuple[int, list[str]]:
    """Native path: drop each monthly partition entirely before ``cutoff`` whose every row is in
    ``retain_keys`` (archived). Returns (rows removed, partitions dropped). TimescaleDB: nothing here
    (rows are deleted, then chunks dropped by :func:`drop_empty_partitions_before`)."""
    if conn.execute("SELECT timeseries_backend()").fetchone()[0] != "native":
        return 0, []
    tcol = table_spec(table).time_column
    removed, dropped = 0, []
    for name, lo, hi, is_default in conn.execute("SELECT * FROM timeseries_partitions(%s)", (table,)).fetchall():
        if is_default or hi is None or hi > cutoff:
            continue
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(name)))
        n_part = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()[0]
        n_match = conn.execute(sql.SQL("SELECT count(*) FROM {} p JOIN retain_keys k ON p.id = k.id AND p.{} = k.t")
                               .format(sql.Identifier(name), sql.Identifier(tcol))).fetchone()[0]
        if n_part == n_match:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
            removed += n_part
            dropped.append(name)
        else:
            log.warning("%s: %d of %d rows are not in the archive; rows are deleted one by one instead",
                        name, n_part - n_match, n_part)
    return removed, dropped


def drop_empty_partitions_before(conn: psycopg.Connection, table: str, cutoff: datetime) -> list[str]:
    """Drop partitions (native) or chunks (TimescaleDB) entirely before ``cutoff`` once they hold no row."""
    if conn.execute("SELECT timeseries_backend()").fetchone()[0] == "timescaledb":
        return [r[0] for r in conn.execute("SELECT timeseries_drop_partitions_before(%s, %s)", (table, cutoff))]
    dropped = []
    for name, lo, hi, is_default in conn.execute("SELECT * FROM timeseries_partitions(%s)", (table,)).fetchall():
        if is_default or hi is None or hi > cutoff:
            continue
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(name)))
        if not conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(name))).fetchone()[0]:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
            dropped.append(name)
    return dropped


# ------------------------------------------------------------------------------------------- restore
@dataclass
class RestoreResult:
    table: str
    target: str
    files: int = 0
    rows_in_range: int = 0
    rows_restored: int = 0
    rows_already_present: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def restore_archive(dsn: str, store: S3Store, table: str, store_id: str | None, start: datetime, end: datetime, *,
                    staging: bool = False) -> RestoreResult:
    """Bring back the archived rows of ``table`` for ``store_id`` (None: rows without a store; '*': every
    store) with time in [start, end), from committed manifests only, each file checked against its
    sha256. Into the table itself (rows already present are left as they are), or with ``staging`` into
    a fresh table ``retain_staging.<table>_<store>_<start>_<end>``. Exact: numeric values come back with
    the digits they had."""
    spec = table_spec(table)
    if end <= start:
        raise ValueError(f"--to must be after --from (got {start.isoformat()} .. {end.isoformat()})")
    with psycopg.connect(dsn, application_name="retain_restore") as conn:
        q = """SELECT f.s3_key, f.sha256 FROM archive_files f JOIN archive_manifests m ON m.id = f.manifest_id
                WHERE m.status = 'committed' AND m.table_name = %(t)s AND m.bucket = %(b)s
                  AND f.max_time >= %(start)s AND f.min_time < %(end)s"""
        params = {"t": table, "b": store.bucket, "start": start, "end": end}
        if store_id == "*":
            pass
        elif store_id is None:
            q += " AND f.store_id IS NULL"
        else:
            q += " AND f.store_id = %(s)s"
            params["s"] = store_id
        files = conn.execute(q + " ORDER BY m.committed_at, f.s3_key", params).fetchall()
        columns = pqx.table_columns(conn, table)
        names = [c.name for c in columns]
        label = (f"{table}_{(store_id or 'none').replace('*', 'all')[:8]}_"
                 f"{start:%Y%m%d}_{end:%Y%m%d}")
        res = RestoreResult(table=table, target=f"retain_staging.{label}" if staging else f"public.{table}",
                            files=len(files))
        conn.execute(sql.SQL("CREATE TEMP TABLE retain_restore (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP")
                     .format(sql.Identifier(table)))
        seen: set[tuple] = set()
        i_id, i_t = names.index("id"), names.index(spec.time_column)
        with conn.cursor().copy(sql.SQL("COPY retain_restore ({}) FROM STDIN").format(
                sql.SQL(", ").join(sql.Identifier(n) for n in names))) as cp:
            for key, digest in files:
                data = store.get(key)
                if pqx.sha256(data) != digest.strip():
                    raise ArchiveError(f"{key}: sha256 differs from the manifest: the archive file was altered")
                t = pqx.read_parquet_bytes(data)
                file_names = t.column_names
                if file_names != names:
                    raise ArchiveError(f"{key}: columns {file_names} differ from {table}'s {names}; "
                                       "restore with --staging after migrating the file")
                for row in pqx.table_rows(t):
                    ts = row[i_t]
                    if not (start <= ts < end) or (row[i_id], ts) in seen:
                        continue
                    seen.add((row[i_id], ts))
                    cp.write_row(row)
        res.rows_in_range = len(seen)
        if staging:
            target = sql.Identifier("retain_staging", label)
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(target, sql.Identifier(table)))
            cur = conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM retain_restore").format(target))
        else:
            cur = conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM retain_restore ON CONFLICT DO NOTHING")
                               .format(sql.Identifier(table)))
        res.rows_restored = cur.rowcount
        res.rows_already_present = res.rows_in_range - res.rows_restored
        conn.commit()
    log.info("restore-archive %s store %s [%s, %s): %d rows from %d files into %s (%d already present)",
             table, store_id, start.isoformat(), end.isoformat(), res.rows_restored, res.files, res.target,
             res.rows_already_present)
    return res
