"""``mining_jobs`` and ``local_patterns`` (spec 3.2).

Job lifecycle: :func:`create_job` (pending) -> :func:`start_job` (running) -> :func:`complete_job` /
:func:`fail_job`. Patterns are written with binary COPY; when the store's ``privacy_configs.encrypt_patterns``
is true the items are encrypted (AES-256-GCM, one token per item, key id in ``items_key_id``) and a
keyring is required; :func:`read_local_patterns` decrypts them again.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Iterable

import psycopg

from include.db.bulk import copy_rows

from include.security.crypto import Keyring

_PATTERN_COLS = ("id", "mining_job_id", "store_id", "pattern_items", "utility", "support", "confidence",
                 "pattern_length", "items_key_id")
_PATTERN_TYPES = ["uuid", "uuid", "uuid", "text[]", "numeric", "numeric", "numeric", "int4", "text"]


class EncryptionRequired(RuntimeError):
    """The store's privacy config asks for encrypted patterns and no keyring was given."""


@dataclass(frozen=True)
class Pattern:
    items: list[str]
    utility: Decimal
    support: Decimal
    confidence: Decimal
    id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(frozen=True)
class StoredPattern:
    id: uuid.UUID
    mining_job_id: uuid.UUID
    store_id: uuid.UUID
    items: list[str]
    utility: Decimal
    support: Decimal
    confidence: Decimal
    pattern_length: int
    created_at: datetime
    encrypted: bool


def items_context(store_id: uuid.UUID) -> str:
    return f"local_patterns.pattern_items:{store_id}"


def create_job(conn: psycopg.Connection, store_id: uuid.UUID, min_utility: Decimal, min_support: Decimal, *,
               max_pattern_length: int = 5, use_pruning: bool = True, batch_size: int = 1000,
               job_id: uuid.UUID | None = None) -> uuid.UUID:
    job_id = job_id or uuid.uuid4()
    conn.execute(
        """INSERT INTO mining_jobs (id, store_id, min_utility, min_support, max_pattern_length, use_pruning,
                                    batch_size) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (job_id, store_id, min_utility, min_support, max_pattern_length, use_pruning, batch_size))
    return job_id


def _transition(conn, job_id, sql, params, allowed_from):
    cur = conn.execute(sql + " WHERE id = %s AND status = ANY(%s)", (*params, job_id, list(allowed_from)))
    if cur.rowcount != 1:
        row = conn.execute("SELECT status FROM mining_jobs WHERE id = %s", (job_id,)).fetchone()
        state = row[0] if row else "absent (or outside the session's store)"
        raise LookupError(f"mining job {job_id} is {state}; expected one of {allowed_from}")


def start_job(conn: psycopg.Connection, job_id: uuid.UUID) -> None:
    _transition(conn, job_id, "UPDATE mining_jobs SET status = 'running', started_at = now(), error_message = NULL",
                (), ("pending", "failed", "running"))


def complete_job(conn: psycopg.Connection, job_id: uuid.UUID, *, execution_time_seconds: Decimal | float,
                 memory_used_mb: Decimal | float, patterns_found: int) -> None:
    _transition(conn, job_id,
                """UPDATE mining_jobs SET status = 'completed', completed_at = now(), execution_time_seconds = %s,
                          memory_used_mb = %s, patterns_found = %s, error_message = NULL""",
                (execution_time_seconds, memory_used_mb, patterns_found), ("running",))


def fail_job(conn: psycopg.Connection, job_id: uuid.UUID, error_message: str, *,
             execution_time_seconds: Decimal | float | None = None, memory_used_mb: Decimal | float | None = None) -> None:
    _transition(conn, job_id,
                """UPDATE mining_jobs SET status = 'failed', completed_at = now(), error_message = %s,
                          execution_time_seconds = COALESCE(%s, execution_time_seconds),
                          memory_used_mb = COALESCE(%s, memory_used_mb)""",
                (error_message, execution_time_seconds, memory_used_mb), ("pending", "running"))


def store_requires_encryption(conn: psycopg.Connection, store_id: uuid.UUID) -> bool:
    row = conn.execute("SELECT encrypt_patterns FROM privacy_configs WHERE store_id = %s", (store_id,)).fetchone()
    return bool(row and row[0])


def copy_local_patterns(conn: psycopg.Connection, job_id: uuid.UUID, store_id: uuid.UUID,
                        patterns: Iterable[Pattern], *, keyring: Keyring | None = None) -> int:
    """COPY patterns of a job into ``local_patterns``, encrypted when the store's privacy config asks."""
    encrypt = store_requires_encryption(conn, store_id)
    if encrypt and keyring is None:
        raise EncryptionRequired(f"store {store_id} stores encrypted patterns (privacy_configs.encrypt_patterns): "
                                 "pass keyring=Keyring.from_connection()")
    ctx = items_context(store_id)

    def rows():
        for p in patterns:
            items, kid = (keyring.encrypt_many(p.items, ctx) if encrypt else (list(p.items), None))
            yield (p.id, job_id, store_id, items, p.utility, p.support, p.confidence, len(p.items), kid)

    return copy_rows(conn, "local_patterns", _PATTERN_COLS, _PATTERN_TYPES, rows())


def read_local_patterns(conn: psycopg.Connection, store_id: uuid.UUID, *, job_id: uuid.UUID | None = None,
                        keyring: Keyring | None = None) -> list[StoredPattern]:
    rows = conn.execute(
        """SELECT id, mining_job_id, store_id, pattern_items, utility, support, confidence, pattern_length,
                  created_at, items_key_id
             FROM local_patterns WHERE store_id = %(s)s AND (%(j)s::uuid IS NULL OR mining_job_id = %(j)s::uuid)
            ORDER BY utility DESC, id""", {"s": store_id, "j": job_id}).fetchall()
    out = []
    for *head, created_at, kid in rows:
        pid, jid, sid, items, utility, support, confidence, length = head
        if kid is not None:
            if keyring is None:
                raise EncryptionRequired(f"local_patterns of store {sid} are encrypted: pass keyring=")
            items = keyring.decrypt_many(items, kid, items_context(sid))
        out.append(StoredPattern(pid, jid, sid, items, utility, support, confidence, length, created_at,
                                 kid is not None))
    return out


def reencrypt_local_patterns(conn: psycopg.Connection, keyring: Keyring, *, batch_size: int = 1000) -> int:
    """Bring every pattern under the active key: re-encrypt those under an older key, and encrypt the
    plaintext ones of stores whose privacy config asks for encryption. Returns the rows changed."""
    n = 0
    while True:
        rows = conn.execute(
            """SELECT id, store_id, pattern_items, items_key_id FROM local_patterns
                WHERE (items_key_id IS NOT NULL AND items_key_id <> %s)
                   OR (items_key_id IS NULL AND store_id IN (
                           SELECT store_id FROM privacy_configs WHERE encrypt_patterns))
                ORDER BY id LIMIT %s FOR UPDATE""", (keyring.active_key_id, batch_size)).fetchall()
        if not rows:
            return n
        for pid, sid, items, kid in rows:
            ctx = items_context(sid)
            plain = keyring.decrypt_many(items, kid, ctx) if kid is not None else items
            new_items, new_kid = keyring.encrypt_many(plain, ctx)
            conn.execute("UPDATE local_patterns SET pattern_items = %s, items_key_id = %s WHERE id = %s",
                         (new_items, new_kid, pid))
        n += len(rows)
