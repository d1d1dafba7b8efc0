"""``federated_rounds``, ``round_participations``, ``global_patterns`` (spec 2.5, 3.3): storage only.
Every ``round_participations`` row is audited as a federated contribution (migration 0005)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable

import psycopg

from include.db.bulk import copy_rows

ROUND_STATUSES = ("pending", "running", "completed", "failed")


@dataclass(frozen=True)
class GlobalPattern:
    pattern_items: list[str]
    aggregated_utility: Decimal
    global_support: Decimal
    contributing_stores: int
    client_coverage_percent: Decimal
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def create_round(conn: psycopg.Connection, *, min_clients_required: int = 2,
                 global_privacy_budget: Decimal | float = Decimal("1.0")) -> tuple[uuid.UUID, int]:
    """A pending round with the next round_number (serialised by an advisory lock); returns (id, number)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('federated_rounds.round_number'))")
        row = conn.execute(
            """INSERT INTO federated_rounds (round_number, min_clients_required, global_privacy_budget)
               SELECT COALESCE(max(round_number), 0) + 1, %s, %s FROM federated_rounds
               RETURNING id, round_number""",
            (min_clients_required, Decimal(str(global_privacy_budget)))).fetchone()
    return row[0], row[1]


def set_round_status(conn: psycopg.Connection, round_id: uuid.UUID, status: str, **fields) -> None:
    """Set status; 'running' stamps started_at, 'completed'/'failed' stamp completed_at and duration_seconds.
    ``fields`` may set participating_clients and patterns_aggregated."""
    if status not in ROUND_STATUSES:
        raise ValueError(f"status must be one of {ROUND_STATUSES}, got {status!r}")
    allowed = {"participating_clients", "patterns_aggregated"}
    bad = set(fields) - allowed
    if bad:
        raise ValueError(f"unknown federated_rounds fields {sorted(bad)}")
    cur = conn.execute(
        """UPDATE federated_rounds SET status = %(st)s::text,
               started_at = CASE WHEN %(st)s::text = 'running' THEN COALESCE(started_at, now()) ELSE started_at END,
               completed_at = CASE WHEN %(st)s::text IN ('completed', 'failed') THEN now() ELSE completed_at END,
               duration_seconds = CASE WHEN %(st)s::text IN ('completed', 'failed') AND started_at IS NOT NULL
                                       THEN EXTRACT(EPOCH FROM now() - started_at) ELSE duration_seconds END,
               participating_clients = COALESCE(%(pc)s::int, participating_clients),
               patterns_aggregated = COALESCE(%(pa)s::int, patterns_aggregated)
            WHERE id = %(id)s""",
        {"st": status, "id": round_id, "pc": fields.get("participating_clients"),
         "pa": fields.get("patterns_aggregated")})
    if cur.rowcount != 1:
        raise LookupError(f"federated_rounds has no row {round_id}")


def add_participation(conn: psycopg.Connection, round_id: uuid.UUID, store_id: uuid.UUID, patterns_contributed: int,
                      privacy_epsilon: Decimal | float) -> uuid.UUID:
    """Record a store's contribution (once per round and store; a retry returns the existing row)."""
    row = conn.execute(
        """INSERT INTO round_participations (round_id, store_id, patterns_contributed, privacy_epsilon)
           VALUES (%s, %s, %s, %s) ON CONFLICT (round_id, store_id) DO NOTHING RETURNING id""",
        (round_id, store_id, patterns_contributed, Decimal(str(privacy_epsilon)))).fetchone()
    if row:
        return row[0]
    return conn.execute("SELECT id FROM round_participations WHERE round_id = %s AND store_id = %s",
                        (round_id, store_id)).fetchone()[0]


def copy_global_patterns(conn: psycopg.Connection, round_id: uuid.UUID, patterns: Iterable[GlobalPattern]) -> int:
    return copy_rows(conn, "global_patterns",
                     ("id", "round_id", "pattern_items", "aggregated_utility", "global_support",
                      "contributing_stores", "client_coverage_percent"),
                     ("uuid", "uuid", "text[]", "numeric", "numeric", "int4", "numeric"),
                     ((p.id, round_id, p.pattern_items, p.aggregated_utility, p.global_support,
                       p.contributing_stores, p.client_coverage_percent) for p in patterns))
