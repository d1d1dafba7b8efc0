"""``transaction_files`` and ``transactions`` (spec 3.1).

Bulk loads use binary COPY (array columns included); reads stream through a server-side cursor in
batches of ``batch_size``. Functions do not commit: load a whole file in one transaction.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Iterable, Iterator

import psycopg

from include.db.bulk import copy_rows

FILE_TYPES = ("csv", "json")
FILE_STATUSES = ("pending", "processing", "completed", "failed")
_COPY_COLS = ("id", "store_id", "file_id", "transaction_date", "items", "quantities", "unit_utilities",
              "total_utility")
_COPY_TYPES = ["uuid", "uuid", "uuid", "timestamptz", "text[]", "numeric[]", "numeric[]", "numeric"]


@dataclass(frozen=True)
class TransactionFile:
    id: uuid.UUID
    store_id: uuid.UUID
    filename: str
    file_size: int
    file_type: str
    upload_timestamp: datetime
    processing_status: str
    error_message: str | None
    s3_bucket: str | None
    s3_key: str | None


@dataclass(frozen=True)
class Transaction:
    store_id: uuid.UUID
    items: list[str]
    quantities: list[Decimal]
    unit_utilities: list[Decimal]
    total_utility: Decimal
    transaction_date: datetime | None = None
    file_id: uuid.UUID | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def register_file(conn: psycopg.Connection, store_id: uuid.UUID, filename: str, file_size: int, file_type: str,
                  *, s3_bucket: str | None = None, s3_key: str | None = None,
                  file_id: uuid.UUID | None = None) -> uuid.UUID:
    if file_type not in FILE_TYPES:
        raise ValueError(f"file_type must be one of {FILE_TYPES}, got {file_type!r}")
    file_id = file_id or uuid.uuid4()
    conn.execute(
        """INSERT INTO transaction_files (id, store_id, filename, file_size, file_type, s3_bucket, s3_key)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (file_id, store_id, filename, file_size, file_type, s3_bucket, s3_key))
    return file_id


def get_file(conn: psycopg.Connection, file_id: uuid.UUID) -> TransactionFile | None:
    row = conn.execute(
        """SELECT id, store_id, filename, file_size, file_type, upload_timestamp, processing_status,
                  error_message, s3_bucket, s3_key FROM transaction_files WHERE id = %s""", (file_id,)).fetchone()
    return TransactionFile(*row) if row else None


def set_file_status(conn: psycopg.Connection, file_id: uuid.UUID, processing_status: str,
                    error_message: str | None = None) -> None:
    if processing_status not in FILE_STATUSES:
        raise ValueError(f"processing_status must be one of {FILE_STATUSES}, got {processing_status!r}")
    cur = conn.execute("UPDATE transaction_files SET processing_status = %s, error_message = %s WHERE id = %s",
                       (processing_status, error_message, file_id))
    if cur.rowcount != 1:
        raise LookupError(f"transaction_files has no row {file_id} (or it is outside the session's store)")


def copy_transactions(conn: psycopg.Connection, rows: Iterable[Transaction]) -> int:
    """COPY (binary) ``rows`` into ``transactions``; returns the number of rows written."""
    now = datetime.now().astimezone()
    return copy_rows(conn, "transactions", _COPY_COLS, _COPY_TYPES,
                     ((t.id, t.store_id, t.file_id, t.transaction_date or now, t.items, t.quantities,
                       t.unit_utilities, t.total_utility) for t in rows))


def count_transactions(conn: psycopg.Connection, store_id: uuid.UUID, window_start: datetime | None = None,
                       window_end: datetime | None = None) -> int:
    return conn.execute(
        """SELECT count(*) FROM transactions WHERE store_id = %(s)s
              AND (%(a)s::timestamptz IS NULL OR transaction_date >= %(a)s::timestamptz)
              AND (%(b)s::timestamptz IS NULL OR transaction_date < %(b)s::timestamptz)""",
        {"s": store_id, "a": window_start, "b": window_end}).fetchone()[0]


def iter_transactions(conn: psycopg.Connection, store_id: uuid.UUID, *, window_start: datetime | None = None,
                      window_end: datetime | None = None, batch_size: int = 1000) -> Iterator[list[Transaction]]:
    """Batches of a store's transactions in [window_start, window_end), by (transaction_date, id).

    Uses a server-side cursor, so it must run inside a transaction (not on an autocommit connection).
    """
    with conn.cursor(name=f"txn_{uuid.uuid4().hex[:12]}") as cur:
        cur.itersize = batch_size
        cur.execute(
            """SELECT store_id, items, quantities, unit_utilities, total_utility, transaction_date, file_id, id
                 FROM transactions WHERE store_id = %(s)s
                  AND (%(a)s::timestamptz IS NULL OR transaction_date >= %(a)s::timestamptz)
                  AND (%(b)s::timestamptz IS NULL OR transaction_date < %(b)s::timestamptz)
                ORDER BY transaction_date, id""",
            {"s": store_id, "a": window_start, "b": window_end})
        while batch := cur.fetchmany(batch_size):
            yield [Transaction(*r) for r in batch]
