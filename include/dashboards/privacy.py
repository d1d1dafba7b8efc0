"""Privacy budget dashboard: per store, the budget spent against its lifetime budget (and over time),
a warning near exhaustion, and the platform's global cap per window.

"Spent" is the ledger's own measure (include.privacy.budget.worst_spend): the composed (ε at the
platform δ) of the live (reserved + charged) releases over the worst elementary window segment, i.e.
what the most-charged transaction has paid. Aborted releases cost nothing."""
from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import datetime

import psycopg

from include.dashboards import STORE_IN_SCOPE, NotFound, Page, Scope, check_page, rows
from include.privacy.budget import Budget, Charge, worst_spend
from include.privacy.mechanisms import Cost
from include.privacy.settings import load_platform_settings

WARN_FRACTION = 0.8   # warning at 80 % of the lifetime budget
MAX_SERIES_POINTS = 500

_CHARGES = """SELECT store_id, window_start, window_end, accounting, rho, epsilon, delta, status, created_at
                FROM privacy_budget_ledger WHERE store_id = ANY(%s) AND status <> 'aborted'
               ORDER BY created_at, id"""


def _charge(r) -> Charge:
    _, ws, we, acc, rho, eps, delta, status, _ = r
    return Charge(ws, we, Cost(acc, rho, eps, delta), status)


def _spent(charges: list[Charge], budget: Budget) -> float | None:
    """ε spent by the most-charged transaction; None when it is unbounded (a charge the ledger's
    accounting cannot compose, e.g. zCDP on a pure ledger: treated as exhausted)."""
    if not charges:
        return 0.0
    eps = float(worst_spend(charges, min(c.window_start for c in charges), max(c.window_end for c in charges),
                            budget).epsilon)
    return eps if math.isfinite(eps) else None


def _status(fraction: float | None) -> str:
    if fraction is None:
        return "unconfigured"
    return "exhausted" if fraction >= 1 - 1e-9 else "warning" if fraction >= WARN_FRACTION else "ok"


def platform_cap(conn: psycopg.Connection) -> dict:
    """The global cap per window (``server_configs.privacy_budget``, ε at δ; None = no cap) and δ."""
    s = load_platform_settings(conn)
    return {"global_epsilon": s.global_epsilon, "delta": s.delta, "warn_fraction": WARN_FRACTION}


def list_budgets(conn: psycopg.Connection, scope: Scope, *, limit: int = 50, offset: int = 0) -> dict:
    """Stores in scope (by name): lifetime ε (``privacy_configs.epsilon``), ε spent, fraction, status
    ok | warning | exhausted | unconfigured, releases and the last release time; plus ``cap``
    (:func:`platform_cap`) with, per store, ``cap_fraction`` (spent / global cap)."""
    check_page(limit, offset)
    p = {**scope.params(), "limit": limit, "offset": offset}
    total = conn.execute(f"SELECT count(*) FROM stores s WHERE {STORE_IN_SCOPE}", p).fetchone()[0]
    items = rows(conn.execute(
        f"""SELECT s.id AS store_id, s.name, s.region_id, c.epsilon::float8 AS lifetime_epsilon, c.noise_type
              FROM stores s
              LEFT JOIN LATERAL (SELECT epsilon, noise_type FROM privacy_configs pc WHERE pc.store_id = s.id
                                  ORDER BY updated_at DESC NULLS LAST, created_at DESC NULLS LAST LIMIT 1) c ON true
             WHERE {STORE_IN_SCOPE} ORDER BY s.name, s.id LIMIT %(limit)s OFFSET %(offset)s""", p))
    cap = platform_cap(conn)
    by_store: dict = defaultdict(list)
    for r in conn.execute(_CHARGES, ([i["store_id"] for i in items],)).fetchall():
        by_store[r[0]].append(r)
    for it in items:
        charges = by_store.get(it["store_id"], [])
        it["releases"] = len(charges)
        it["last_release_at"] = charges[-1][8] if charges else None
        if it["lifetime_epsilon"] and it["lifetime_epsilon"] > 0:
            budget = Budget(it["lifetime_epsilon"], it["noise_type"] or "laplace", cap["delta"], cap["global_epsilon"])
            it["spent_epsilon"] = _spent([_charge(c) for c in charges], budget)
            it["fraction"] = (1.0 if it["spent_epsilon"] is None
                              else it["spent_epsilon"] / it["lifetime_epsilon"])
        else:
            it["spent_epsilon"], it["fraction"] = None, None
        it["status"] = _status(it["fraction"])
        g = cap["global_epsilon"]
        it["cap_fraction"] = (it["spent_epsilon"] / g) if g and it["spent_epsilon"] is not None else None
    return {**Page(total, limit, offset, items).as_dict(), "cap": cap}


def budget_series(conn: psycopg.Connection, scope: Scope, store_id: uuid.UUID) -> dict:
    """One store's spend over time: after each live release (oldest first, at most the last
    ``MAX_SERIES_POINTS``), the ε spent so far, with the lifetime budget and the global cap."""
    p = {**scope.params(), "id": store_id}
    found = rows(conn.execute(
        f"""SELECT s.id AS store_id, s.name, c.epsilon::float8 AS lifetime_epsilon, c.noise_type FROM stores s
              LEFT JOIN LATERAL (SELECT epsilon, noise_type FROM privacy_configs pc WHERE pc.store_id = s.id
                                  ORDER BY updated_at DESC NULLS LAST, created_at DESC NULLS LAST LIMIT 1) c ON true
             WHERE s.id = %(id)s AND {STORE_IN_SCOPE}""", p))
    if not found:
        raise NotFound(f"store {store_id} does not exist or is not in your scope")
    out = found[0]
    cap = platform_cap(conn)
    out["cap"] = cap
    raw = conn.execute(_CHARGES, ([store_id],)).fetchall()
    if not out["lifetime_epsilon"]:
        out.update(points=[], spent_epsilon=None, fraction=None, status=_status(None))
        return out
    budget = Budget(out["lifetime_epsilon"], out["noise_type"] or "laplace", cap["delta"], cap["global_epsilon"])
    charges = [_charge(r) for r in raw]
    points = []
    for i in range(max(0, len(charges) - MAX_SERIES_POINTS), len(charges)):
        at: datetime = raw[i][8]
        points.append({"at": at, "spent_epsilon": _spent(charges[:i + 1], budget), "status": raw[i][7]})
    out["points"] = points
    out["spent_epsilon"] = points[-1]["spent_epsilon"] if points else 0.0
    out["fraction"] = 1.0 if out["spent_epsilon"] is None else out["spent_epsilon"] / out["lifetime_epsilon"]
    out["status"] = _status(out["fraction"])
    return out
