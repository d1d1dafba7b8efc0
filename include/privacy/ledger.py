"""``privacy_budget_ledger`` (migration 0300): reserve, charge and abort releases per store.

Functions take a psycopg 3 connection and run their own transaction blocks (``conn.transaction()``),
so :func:`reserve` is committed (when the connection is not inside an outer transaction) *before* the
caller draws any noise. A release that would exceed the budget raises :class:`BudgetExceeded` and
leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .budget import Budget, BudgetExceeded, Charge, Spend, check, display, remaining, worst_spend
from .mechanisms import Cost

MECHANISMS = ("discrete_laplace", "discrete_gaussian", "laplace_threshold", "gaussian_threshold")


class LedgerError(RuntimeError):
    pass


@dataclass(frozen=True)
class LedgerEntry:
    id: uuid.UUID
    store_id: uuid.UUID
    round_id: uuid.UUID | None
    release_name: str
    window_start: datetime
    window_end: datetime
    mode: str
    mechanism: str
    cost: Cost
    epsilon_display: float
    delta_display: float
    status: str
    details: dict
    output: Any
    created_at: datetime

    def charge(self) -> Charge:
        return Charge(self.window_start, self.window_end, self.cost, self.status, str(self.id))


_COLS = ("id, store_id, round_id, release_name, window_start, window_end, mode, mechanism, accounting, rho, "
         "epsilon, delta, epsilon_display, delta_display, status, details, output, created_at")


def _entry(row) -> LedgerEntry:
    (id_, store, rnd, name, ws, we, mode, mech, acc, rho, eps, delta, ed, dd, status, details, output,
     created) = row
    return LedgerEntry(id_, store, rnd, name, ws, we, mode, mech, Cost(acc, rho, eps, delta), ed, dd, status,
                       details or {}, output, created)


def _lock_key(store_id) -> int:
    return int.from_bytes(hashlib.sha256(f"privacy_budget_ledger:{store_id}".encode()).digest()[:8], "big",
                          signed=True)


def _scope(conn: psycopg.Connection, store_id) -> None:
    """Hold this transaction to the store under RLS (the owner's policy honours app.current_store_id)."""
    conn.execute("SELECT set_config('app.current_store_id', %s, true)", (str(store_id),))


def charges(conn: psycopg.Connection, store_id, window_start: datetime | None = None,
            window_end: datetime | None = None, *, include_aborted: bool = False) -> list[LedgerEntry]:
    """The store's charges overlapping the window (all when no window)."""
    q = f"SELECT {_COLS} FROM privacy_budget_ledger WHERE store_id = %s"
    args: list = [store_id]
    if not include_aborted:
        q += " AND status <> 'aborted'"
    if window_start is not None and window_end is not None:
        q += " AND window_start < %s AND window_end > %s"
        args += [window_end, window_start]
    q += " ORDER BY created_at, id"
    with conn.transaction():
        _scope(conn, store_id)
        return [_entry(r) for r in conn.execute(q, args).fetchall()]


def find_release(conn: psycopg.Connection, store_id, round_id, release_name: str) -> LedgerEntry | None:
    if round_id is None:
        return None
    with conn.transaction():
        _scope(conn, store_id)
        row = conn.execute(
            f"SELECT {_COLS} FROM privacy_budget_ledger WHERE store_id = %s AND round_id = %s AND release_name = %s "
            f"AND status <> 'aborted'", (store_id, round_id, release_name)).fetchone()
    return _entry(row) if row else None


def spent(conn: psycopg.Connection, store_id, window_start: datetime, window_end: datetime, budget: Budget
          ) -> Spend:
    """The worst transaction's composed spend within the window."""
    return worst_spend([e.charge() for e in charges(conn, store_id, window_start, window_end)],
                       window_start, window_end, budget)


def headroom(conn: psycopg.Connection, store_id, window_start: datetime, window_end: datetime, budget: Budget
             ) -> float:
    """What is left for the window, in the budget's unit (ε for a pure ledger, ρ for zCDP)."""
    return remaining([e.charge() for e in charges(conn, store_id, window_start, window_end)],
                     window_start, window_end, budget)


def reserve(conn: psycopg.Connection, *, store_id, window_start: datetime, window_end: datetime, cost: Cost,
            mechanism: str, budget: Budget, round_id=None, release_name: str = "contribution",
            mode: str = "local", details: dict | None = None, store_label: str | None = None) -> LedgerEntry:
    """Check the budget and insert a 'reserved' charge, atomically per store. Raises BudgetExceeded
    (nothing written) when the release does not fit. If the same (store, round, release) already has a
    live row, that row is returned unchanged (a retried task)."""
    if mechanism not in MECHANISMS:
        raise LedgerError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    label = store_label or f"store {store_id}"
    with conn.transaction():
        _scope(conn, store_id)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(store_id),))
        existing = find_release(conn, store_id, round_id, release_name)
        if existing is not None:
            return existing
        live = [e.charge() for e in charges(conn, store_id, window_start, window_end)]
        new = Charge(window_start, window_end, cost, "reserved")
        decision = check(live, new, budget, label)
        if not decision.allowed:
            raise BudgetExceeded(decision.message)
        eps_d, delta_d = display(cost, budget)
        row = conn.execute(
            f"""INSERT INTO privacy_budget_ledger
                   (store_id, round_id, release_name, window_start, window_end, mode, mechanism, accounting,
                    rho, epsilon, delta, epsilon_display, delta_display, status, details)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'reserved', %s)
                RETURNING {_COLS}""",
            (store_id, round_id, release_name, window_start, window_end, mode, mechanism, cost.accounting,
             cost.rho, cost.epsilon, cost.delta, eps_d, min(delta_d, 0.999999), Jsonb(_jsonable(details or {}))),
        ).fetchone()
    return _entry(row)


def commit_charge(conn: psycopg.Connection, ledger_id, output: Any = None) -> None:
    """Mark a reservation as charged (the output exists and may leave the store)."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE privacy_budget_ledger SET status = 'charged', charged_at = now(), output = %s "
            "WHERE id = %s AND status = 'reserved' RETURNING id",
            (None if output is None else Jsonb(_jsonable(output)), ledger_id)).fetchone()
        if row is None:
            raise LedgerError(f"ledger row {ledger_id} is not a reservation (already charged or aborted?)")


def abort_charge(conn: psycopg.Connection, ledger_id, reason: str = "") -> bool:
    """Release a reservation: the round failed before its output left the store. Charged rows stay."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE privacy_budget_ledger SET status = 'aborted', aborted_at = now(), error_message = %s "
            "WHERE id = %s AND status = 'reserved' RETURNING id", (reason or None, ledger_id)).fetchone()
    return row is not None


def abort_round(conn: psycopg.Connection, round_id, reason: str = "", store_id=None) -> int:
    """Abort every reservation of a failed round (optionally of one store); returns how many."""
    with conn.transaction():
        rows = conn.execute(
            "UPDATE privacy_budget_ledger SET status = 'aborted', aborted_at = now(), error_message = %s "
            "WHERE round_id = %s AND status = 'reserved' AND (%s::uuid IS NULL OR store_id = %s::uuid) RETURNING id",
            (reason or None, round_id, store_id, store_id)).fetchall()
    return len(rows)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (uuid.UUID, datetime)):
        return str(v) if isinstance(v, uuid.UUID) else v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, float) and v != v:
        return None
    return v


def dumps(v) -> str:
    return json.dumps(_jsonable(v), sort_keys=True)
