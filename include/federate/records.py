"""The round's tables: ``federated_rounds`` (+ migration 0400), ``round_participations``,
``global_patterns``, and the message trace in ``activity_logs``. psycopg 3; callers own connections."""
from __future__ import annotations

import json
import logging
import threading
import uuid
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from include.db import rounds as R
from include.federate.messages import SignedMessage

log = logging.getLogger(__name__)


def open_round(conn: psycopg.Connection, *, params: dict, min_clients: int, epsilon: float, mode: str,
               region_id, coordinator_id: str, dag_run_id: str | None = None) -> tuple[uuid.UUID, int]:
    """A pending round with the next round_number; returns (id, number). A retry of the same DAG run
    finds its round again."""
    with conn.transaction():
        if dag_run_id:
            row = conn.execute("SELECT id, round_number FROM federated_rounds WHERE dag_run_id = %s",
                               (dag_run_id,)).fetchone()
            if row:
                return row[0], row[1]
        rid, number = R.create_round(conn, min_clients_required=int(min_clients),
                                     global_privacy_budget=Decimal(repr(float(epsilon))))
        conn.execute("""UPDATE federated_rounds SET params = %s, mode = %s, region_id = %s, coordinator_id = %s,
                        dag_run_id = %s, current_phase = 'pending' WHERE id = %s""",
                     (Jsonb(params), mode, region_id, coordinator_id, dag_run_id, rid))
    return rid, number


def round_row(conn: psycopg.Connection, round_id) -> dict | None:
    cur = conn.execute("SELECT * FROM federated_rounds WHERE id = %s", (round_id,))
    row = cur.fetchone()
    return None if row is None else dict(zip([d.name for d in cur.description], row))


def set_running(conn: psycopg.Connection, round_id, *, params_update: dict | None = None) -> None:
    with conn.transaction():
        R.set_round_status(conn, round_id, "running")
        if params_update:
            conn.execute("UPDATE federated_rounds SET params = params || %s, current_phase = 'invite' WHERE id = %s",
                         (Jsonb(params_update), round_id))


def set_phase(conn: psycopg.Connection, round_id, phase: str) -> None:
    with conn.transaction():
        conn.execute("UPDATE federated_rounds SET current_phase = %s WHERE id = %s", (phase[:64], round_id))


def fail_round(conn: psycopg.Connection, round_id, reason: str, *, levels=None, participating: int | None = None) -> None:
    """Mark failed with the reason (idempotent: a completed round is never turned into a failed one)."""
    with conn.transaction():
        st = conn.execute("SELECT status FROM federated_rounds WHERE id = %s FOR UPDATE", (round_id,)).fetchone()
        if st is None or st[0] in ("completed", "failed"):
            return
        R.set_round_status(conn, round_id, "failed", participating_clients=participating)
        conn.execute("UPDATE federated_rounds SET error_message = %s, current_phase = 'failed', "
                     "levels = COALESCE(%s, levels) WHERE id = %s",
                     (reason[:4000], None if levels is None else Jsonb(levels), round_id))


def complete_round(conn: psycopg.Connection, round_id, result, spec, *, store_ids: dict) -> dict:
    """Participations, global patterns and the completed status, in one transaction.
    ``store_ids`` maps store party ids to store UUIDs. Idempotent for a retried task."""
    from include.privacy.mechanisms import rho_to_epsilon

    cost = result.cost
    eps = float(cost.epsilon) if cost.accounting == "pure" else rho_to_epsilon(cost.rho, spec.dlt)
    with conn.transaction():
        st = conn.execute("SELECT status FROM federated_rounds WHERE id = %s FOR UPDATE", (round_id,)).fetchone()
        if st and st[0] == "completed":
            return {"already": True}
        for party, levels in sorted(result.included.items()):
            R.add_participation(conn, round_id, store_ids[party], int(result.contributed.get(party, 0)),
                                Decimal(repr(eps)))
        conn.execute("DELETE FROM global_patterns WHERE round_id = %s", (round_id,))   # a retried task
        n = 0
        with conn.cursor() as cur:
            with cur.copy("""COPY global_patterns (id, round_id, pattern_items, aggregated_utility, global_support,
                                 contributing_stores, client_coverage_percent, utility_stddev, utility_ci_low,
                                 utility_ci_high, confident, pattern_rank, pattern_length) FROM STDIN""") as cp:
                for p in result.patterns:
                    cp.write_row((uuid.uuid4(), round_id, p.pattern_items, p.aggregated_utility, p.global_support,
                                  p.contributing_stores, p.client_coverage_percent, p.utility_stddev,
                                  p.utility_ci_low, p.utility_ci_high, p.confident, p.pattern_rank,
                                  p.pattern_length))
                    n += 1
        R.set_round_status(conn, round_id, "completed", participating_clients=len(result.included),
                           patterns_aggregated=n)
        conn.execute("""UPDATE federated_rounds SET current_phase = 'completed', levels = %s, privacy_cost = %s,
                        params = params || %s WHERE id = %s""",
                     (Jsonb(result.levels), Jsonb({"accounting": cost.accounting, "rho": cost.rho,
                                                    "epsilon": eps, "delta": spec.dlt}),
                      Jsonb({"threshold": result.threshold, "colluders": result.colluders,
                             "summary": {k: (None if v is None else float(v)) for k, v in result.summary.items()},
                             "declined": result.declined, "not_answered": result.not_answered}), round_id))
    return {"participations": len(result.included), "patterns": n}


class ActivityAudit:
    """Buffers the message trace and writes it to ``activity_logs`` (action types
    ``federate_message_sent`` / ``_received`` / ``_rejected`` / ``_excluded`` / ``_aborted``)."""

    def __init__(self, dsn: str, round_id, *, store_id=None, actor: str = "") -> None:
        self.dsn, self.round_id, self.store_id, self.actor = dsn, str(round_id), store_id, actor
        self._rows: list[tuple] = []
        self._lock = threading.Lock()

    def __call__(self, direction: str, msg: SignedMessage | None, **extra: Any) -> None:
        rec = msg.audit_record() if msg is not None else {}
        rec.update({k: v for k, v in extra.items() if v is not None})
        rec["actor"] = self.actor
        desc = (f"{self.actor} {direction} {rec.get('type', '?')} "
                f"{'from ' + str(rec.get('sender')) if direction != 'sent' else 'to ' + str(rec.get('recipient') or 'all')}"
                f" (round {rec.get('round_id', self.round_id)}, phase {rec.get('phase', '?')})")
        if extra.get("code"):
            desc += f": {extra['code']}"
        with self._lock:
            self._rows.append((self.store_id, f"federate_message_{direction}"[:50], desc[:1000], "federated_round",
                               self.round_id, json.dumps(rec, default=str)))

    def flush(self, conn: psycopg.Connection | None = None) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0

        def write(c):
            with c.transaction(), c.cursor() as cur:
                cur.executemany("""INSERT INTO activity_logs (store_id, action_type, action_description, resource_type,
                                   resource_id, additional_data) VALUES (%s, %s, %s, %s, %s, %s::jsonb)""", rows)
        if conn is not None:
            write(conn)
        else:
            with psycopg.connect(self.dsn) as c:
                write(c)
        return len(rows)
