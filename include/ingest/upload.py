"""Putting transaction files into the bucket and registering them (``transaction_files``).

* ``upload_files(conn, s3, store_id, paths)``: the store-facing upload (``python -m include.ingest
  upload --store STORE_ID FILE...``): each file goes to ``incoming/<store_id>/<file_id>_<name>``
  and gets a ``pending`` row with its size, type, bucket, key and SHA-256.
* ``discover_files(conn, s3)``: files dropped into ``incoming/<store_id>/`` by other means get a
  ``pending`` row too (idempotent: one row per object); a file of a known store with an unknown
  extension moves to ``failed/`` with an ``activity_logs`` entry; an object of no known store is
  left in place and logged (the bucket may be shared with another environment).
* ``pending_files(conn)``: the ids the DAG maps over.

Functions commit their own small transactions (each registration is independent).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass

import psycopg

from include.ingest.load import BUCKET

log = logging.getLogger("include.ingest.upload")

INCOMING = "incoming/"
EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json"}


class UploadError(ValueError):
    pass


@dataclass
class Uploaded:
    file_id: str
    filename: str
    file_size: int
    file_type: str
    s3_bucket: str
    s3_key: str
    content_sha256: str
    duplicate_of: str | None = None     # a file of the store with the same content, if any


def file_type_of(name: str) -> str | None:
    return EXTENSIONS.get(os.path.splitext(name)[1].lower())


def _sha256(path: str) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while data := f.read(8 << 20):
            h.update(data)
            size += len(data)
    return size, h.hexdigest()


def _store_active(conn: psycopg.Connection, store_id) -> bool | None:
    row = conn.execute("SELECT is_active FROM stores WHERE id = %s", (store_id,)).fetchone()
    return None if row is None else bool(row[0])


def _register(conn, file_id, store_id, filename, size, file_type, bucket, key, sha) -> bool:
    """Inserts the pending row; False when the object is already registered."""
    try:
        from include.db.transactions import register_file
    except ImportError:  # pragma: no cover - schema module absent
        register_file = None
    with conn.transaction():
        exists = conn.execute("SELECT 1 FROM transaction_files WHERE s3_bucket = %s AND s3_key = %s",
                              (bucket, key)).fetchone()
        if exists:
            return False
        if register_file is not None:
            register_file(conn, store_id, filename[:255], size, file_type, s3_bucket=bucket,
                          s3_key=key, file_id=file_id)
        else:
            conn.execute("""INSERT INTO transaction_files (id, store_id, filename, file_size, file_type,
                                                          s3_bucket, s3_key)
                            VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                         (file_id, store_id, filename[:255], size, file_type, bucket, key))
        if sha:
            conn.execute("UPDATE transaction_files SET content_sha256 = %s WHERE id = %s",
                         (sha, file_id))
    return True


def upload_files(conn: psycopg.Connection, s3, store_id, paths, *, bucket: str = BUCKET,
                 file_type: str | None = None) -> list[Uploaded]:
    """Uploads and registers each file; raises UploadError before uploading anything when the
    store is unknown or a file's type cannot be told."""
    store_id = str(uuid.UUID(str(store_id)))
    active = _store_active(conn, store_id)
    conn.rollback()
    if not active:
        raise UploadError(f"store {store_id} is not a known active store")
    plan = []
    for p in paths:
        p = os.fspath(p)
        if not os.path.isfile(p):
            raise UploadError(f"{p}: no such file")
        ft = file_type or file_type_of(p)
        if ft not in ("csv", "json"):
            raise UploadError(f"{p}: cannot tell the file type from the extension "
                              f"(.csv, .json, .jsonl, .ndjson); pass --type csv|json")
        plan.append((p, ft))
    out = []
    for p, ft in plan:
        size, sha = _sha256(p)
        file_id = str(uuid.uuid4())
        name = os.path.basename(p)
        key = f"{INCOMING}{store_id}/{file_id}_{name}"
        s3.upload_file(p, bucket, key)
        _register(conn, file_id, store_id, name, size, ft, bucket, key, sha)
        dup = conn.execute(
            """SELECT id FROM transaction_files WHERE store_id = %s AND content_sha256 = %s
                 AND id <> %s AND duplicate_of IS NULL AND processing_status <> 'failed'
               ORDER BY upload_timestamp LIMIT 1""", (store_id, sha, file_id)).fetchone()
        conn.rollback()
        u = Uploaded(file_id, name, size, ft, bucket, key, sha, str(dup[0]) if dup else None)
        log.info("uploaded %s as s3://%s/%s (file %s)%s", p, bucket, key, file_id,
                 f", duplicate of {u.duplicate_of}" if u.duplicate_of else "")
        out.append(u)
    return out


def _fail_object(conn, s3, bucket: str, key: str, reason: str, store_id=None) -> None:
    rest = key[len(INCOMING):]
    dst = "failed/" + rest
    s3.copy_object(Bucket=bucket, Key=dst, CopySource={"Bucket": bucket, "Key": key})
    with conn.transaction():
        conn.execute(
            """INSERT INTO activity_logs (store_id, action_type, action_description, resource_type,
                                          additional_data)
               VALUES (%s, 'transaction_file_failed', %s, 'transaction_file', %s::jsonb)""",
            (store_id, f"{key}: {reason}", json.dumps({"s3_bucket": bucket, "s3_key": dst,
                                                       "error_message": reason})))
    s3.delete_object(Bucket=bucket, Key=key)
    log.warning("s3://%s/%s not registered: %s (moved to %s)", bucket, key, reason, dst)


_warned: set[str] = set()


def discover_files(conn: psycopg.Connection, s3, *, bucket: str = BUCKET) -> list[str]:
    """Registers the objects under ``incoming/`` that have no row yet; their new file ids.

    An object of a known store with an unknown extension moves to ``failed/`` (activity log
    entry); an object whose key names no known store is left where it is and logged."""
    new = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=INCOMING):
        for obj in page.get("Contents", []):
            key, size = obj["Key"], obj["Size"]
            if key.endswith("/"):
                continue
            known = conn.execute("SELECT 1 FROM transaction_files WHERE s3_bucket = %s AND s3_key = %s",
                                 (bucket, key)).fetchone()
            conn.rollback()
            if known:
                continue
            parts = key[len(INCOMING):].split("/")
            try:
                store_id = str(uuid.UUID(parts[0])) if len(parts) == 2 else None
            except ValueError:
                store_id = None
            if store_id is None or _store_active(conn, store_id) is None:
                # not ours to judge (another environment may share the bucket): left in place
                conn.rollback()
                if key not in _warned:
                    _warned.add(key)
                    log.warning("s3://%s/%s not registered: %s", bucket, key,
                                "the key is not incoming/<store_id>/<file name>" if store_id is None
                                else f"store {store_id} is not a known store")
                continue
            conn.rollback()
            name = parts[1]
            ft = file_type_of(name)
            if ft is None:
                _fail_object(conn, s3, bucket, key, "unknown file type (extension .csv, .json, "
                             ".jsonl or .ndjson expected)", store_id)
                continue
            file_id = str(uuid.uuid4())
            prefix = name.split("_", 1)[0]
            try:  # an object named <uuid>_<name> keeps its uuid as file id when it is free
                cand = str(uuid.UUID(prefix))
                if not conn.execute("SELECT 1 FROM transaction_files WHERE id = %s",
                                    (cand,)).fetchone():
                    file_id, name = cand, name.split("_", 1)[1]
                conn.rollback()
            except ValueError:
                pass
            if _register(conn, file_id, store_id, name, size, ft, bucket, key, None):
                log.info("registered s3://%s/%s as file %s", bucket, key, file_id)
                new.append(file_id)
    return new


def pending_files(conn: psycopg.Connection, *, limit: int = 1000) -> list[str]:
    rows = conn.execute(
        """SELECT id FROM transaction_files WHERE processing_status = 'pending'
            ORDER BY upload_timestamp, id LIMIT %s""", (limit,)).fetchall()
    conn.rollback()
    return [str(r[0]) for r in rows]


def find_file(conn: psycopg.Connection, ref: str, *, bucket: str = BUCKET) -> str | None:
    """A file id from a reference: a file id, an object key, or ``s3://bucket/key``."""
    ref = ref.strip()
    if ref.startswith("s3://"):
        bucket, _, ref = ref[5:].partition("/")
    try:
        fid = str(uuid.UUID(ref))
        row = conn.execute("SELECT id FROM transaction_files WHERE id = %s", (fid,)).fetchone()
    except ValueError:
        row = conn.execute(
            """SELECT id FROM transaction_files WHERE s3_bucket = %s AND s3_key = %s
               UNION ALL
               SELECT id FROM transaction_files WHERE s3_key LIKE %s
               LIMIT 1""", (bucket, ref, "%/" + ref.rsplit("/", 1)[-1])).fetchone()
    conn.rollback()
    return str(row[0]) if row else None


__all__ = ["Uploaded", "UploadError", "discover_files", "file_type_of", "find_file",
           "pending_files", "s3_client", "upload_files"]


def s3_client(conn_id: str | None = None):
    """A boto3 S3 client from connection ``platform_s3`` (``AIRFLOW_CONN_PLATFORM_S3``), for code
    outside Airflow; tasks use ``S3Hook(aws_conn_id=...).get_conn()``."""
    import boto3

    from include.connections import S3, get_connection

    c = get_connection(conn_id or S3)
    extra = c.extra or {}
    return boto3.client("s3", endpoint_url=extra.get("endpoint_url"),
                        region_name=extra.get("region_name", "us-east-1"),
                        aws_access_key_id=c.login or None, aws_secret_access_key=c.password or None,
                        verify=extra.get("verify"))  # TLS mode: the project CA bundle (docs/tls.md)
