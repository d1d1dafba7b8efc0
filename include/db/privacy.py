"""``privacy_configs`` and ``privacy_applications`` (spec 2.4): storage only; the mechanisms live in
``include/privacy``. Every change of a privacy config is audited by a trigger (migration 0005)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Iterable

import psycopg

from include.db.bulk import copy_rows

NOISE_TYPES = ("laplace", "gaussian")


@dataclass(frozen=True)
class PrivacyConfig:
    id: uuid.UUID
    store_id: uuid.UUID
    epsilon: Decimal
    noise_type: str
    hash_patterns: bool
    encrypt_patterns: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PrivacyApplication:
    store_id: uuid.UUID
    pattern_id: uuid.UUID
    original_utility: Decimal
    noisy_utility: Decimal
    noise_added: Decimal
    epsilon_used: Decimal
    applied_at: datetime | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def get_privacy_config(conn: psycopg.Connection, store_id: uuid.UUID) -> PrivacyConfig | None:
    row = conn.execute(
        """SELECT id, store_id, epsilon, noise_type, hash_patterns, encrypt_patterns, created_at, updated_at
             FROM privacy_configs WHERE store_id = %s""", (store_id,)).fetchone()
    return PrivacyConfig(*row) if row else None


def upsert_privacy_config(conn: psycopg.Connection, store_id: uuid.UUID, *, epsilon: Decimal | float = Decimal("1.0"),
                          noise_type: str = "laplace", hash_patterns: bool = False,
                          encrypt_patterns: bool = False) -> uuid.UUID:
    """The store's one privacy config, created or replaced (audited with old and new values)."""
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"noise_type must be one of {NOISE_TYPES}, got {noise_type!r}")
    return conn.execute(
        """INSERT INTO privacy_configs (store_id, epsilon, noise_type, hash_patterns, encrypt_patterns)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (store_id) DO UPDATE SET epsilon = EXCLUDED.epsilon, noise_type = EXCLUDED.noise_type,
                hash_patterns = EXCLUDED.hash_patterns, encrypt_patterns = EXCLUDED.encrypt_patterns
           RETURNING id""",
        (store_id, Decimal(str(epsilon)), noise_type, hash_patterns, encrypt_patterns)).fetchone()[0]


def copy_privacy_applications(conn: psycopg.Connection, rows: Iterable[PrivacyApplication]) -> int:
    now = datetime.now().astimezone()
    return copy_rows(conn, "privacy_applications",
                     ("id", "store_id", "pattern_id", "original_utility", "noisy_utility", "noise_added",
                      "epsilon_used", "applied_at"),
                     ("uuid", "uuid", "uuid", "numeric", "numeric", "numeric", "numeric", "timestamptz"),
                     ((r.id, r.store_id, r.pattern_id, r.original_utility, r.noisy_utility, r.noise_added,
                       r.epsilon_used, r.applied_at or now) for r in rows))
