"""Rounds dashboard: the rounds list, one round (levels, timings, stores) and its global patterns,
and the round-over-round trend of a pattern. See the package docstring for the scope contract.

Round scope: a coordinator sees the rounds of their region; a store scope sees the rounds that
invited the store (``params.store_ids``)."""
from __future__ import annotations

import uuid

import psycopg

from include.dashboards import Invalid, NotFound, Page, Scope, check_page, rows

ROUND_IN_SCOPE = ("(%(scope_region)s::uuid IS NULL OR r.region_id = %(scope_region)s::uuid) AND "
                  "(%(scope_store)s::uuid IS NULL OR r.params->'store_ids' ? %(scope_store)s::text)")

# dropouts: distinct parties dropped at any level; declined: refused or never answered the invitation
_ROUND_COLS = """
    r.id, r.round_number, r.status, r.mode, r.region_id, r.current_phase, r.started_at, r.completed_at,
    COALESCE(r.duration_seconds, EXTRACT(EPOCH FROM (COALESCE(r.completed_at, now()) - r.started_at)))::float8
        AS duration_seconds,
    r.duration_seconds IS NULL AS duration_running,
    COALESCE(jsonb_array_length(CASE WHEN jsonb_typeof(r.params->'store_ids') = 'array'
                                     THEN r.params->'store_ids' END), 0) AS invited,
    r.participating_clients AS participants,
    (SELECT count(DISTINCT d) FROM jsonb_array_elements(CASE WHEN jsonb_typeof(r.levels) = 'array'
                                                              THEN r.levels ELSE '[]' END) l,
            jsonb_array_elements_text(CASE WHEN jsonb_typeof(l->'dropped') = 'array' THEN l->'dropped'
                                           ELSE '[]' END) d)::int AS dropouts,
    (COALESCE(jsonb_array_length(CASE WHEN jsonb_typeof(r.params->'declined') = 'array' THEN r.params->'declined'
                                      WHEN jsonb_typeof(r.params->'declined') = 'object' THEN NULL END), 0)
     + COALESCE((SELECT count(*) FROM jsonb_object_keys(CASE WHEN jsonb_typeof(r.params->'declined') = 'object'
                                                             THEN r.params->'declined' ELSE '{}' END)), 0)
     + COALESCE(jsonb_array_length(CASE WHEN jsonb_typeof(r.params->'not_answered') = 'array'
                                        THEN r.params->'not_answered' END), 0))::int AS declined,
    (r.privacy_cost->>'epsilon')::float8 AS epsilon_per_store,
    (SELECT COALESCE(sum(p.privacy_epsilon), 0) FROM round_participations p WHERE p.round_id = r.id)::float8
        AS epsilon_spent,
    r.patterns_aggregated, r.error_message"""


def list_rounds(conn: psycopg.Connection, scope: Scope, *, status: str | None = None, limit: int = 50,
                offset: int = 0) -> dict:
    """Rounds in scope, newest first: status, duration, invited, participants, dropouts, declined and
    budget spent (ε per store from ``privacy_cost``, ε summed over participations), plus the status
    counts of all rounds in scope (``by_status``)."""
    check_page(limit, offset)
    p = {**scope.params(), "status": status, "limit": limit, "offset": offset}
    total = conn.execute(f"""SELECT count(*) FROM federated_rounds r WHERE {ROUND_IN_SCOPE}
                               AND (%(status)s::text IS NULL OR r.status = %(status)s::text)""", p).fetchone()[0]
    items = rows(conn.execute(
        f"""SELECT {_ROUND_COLS}
              FROM (SELECT * FROM federated_rounds r WHERE {ROUND_IN_SCOPE}
                       AND (%(status)s::text IS NULL OR r.status = %(status)s::text)
                     ORDER BY r.round_number DESC LIMIT %(limit)s OFFSET %(offset)s) r
             ORDER BY r.round_number DESC""", p))
    by_status = dict(conn.execute(
        f"SELECT r.status, count(*) FROM federated_rounds r WHERE {ROUND_IN_SCOPE} GROUP BY r.status",
        p).fetchall())
    return {**Page(total, limit, offset, items).as_dict(), "by_status": by_status}


def get_round(conn: psycopg.Connection, scope: Scope, round_id: uuid.UUID) -> dict:
    """One round: the list's columns, its params, its levels with timings, and its stores: every invited
    store with ``outcome`` participated | dropped | declined | invited (not answered / still running)."""
    p = {**scope.params(), "id": round_id}
    found = rows(conn.execute(f"SELECT {_ROUND_COLS}, r.params, r.levels, r.privacy_cost "
                              f"FROM federated_rounds r WHERE r.id = %(id)s AND {ROUND_IN_SCOPE}", p))
    if not found:
        raise NotFound(f"round {round_id} does not exist or is not in your scope")
    rnd = found[0]
    levels = rnd.pop("levels") or []
    rnd["levels"] = [{"level": lv.get("level"), "candidates": lv.get("candidates"), "clients": lv.get("clients"),
                      "survivors": lv.get("survivors"), "dropped": len(lv.get("dropped") or []),
                      "seconds": lv.get("seconds")} for lv in levels if isinstance(lv, dict)]
    dropped = {d for lv in levels if isinstance(lv, dict) for d in (lv.get("dropped") or [])}
    params = rnd.get("params") or {}
    declined = params.get("declined") or []
    declined_ids = set(declined if isinstance(declined, list) else declined.keys())
    declined_ids = {str(d).removeprefix("store:") for d in declined_ids}
    invited = [str(s) for s in (params.get("store_ids") or [])]
    parts = {str(r["store_id"]): r for r in rows(conn.execute(
        """SELECT p.store_id, p.patterns_contributed, p.privacy_epsilon::float8 AS privacy_epsilon,
                  p.contribution_timestamp
             FROM round_participations p WHERE p.round_id = %s""", (round_id,)))}
    names = dict(conn.execute("SELECT id::text, name FROM stores WHERE id::text = ANY(%s)",
                              (sorted(set(invited) | set(parts)),)).fetchall())
    stores = []
    for sid in dict.fromkeys(invited + sorted(parts)):
        if scope.store_id is not None and sid != str(scope.store_id):
            continue  # a store sees the round, not the other stores' outcomes
        part = parts.get(sid)
        outcome = ("participated" if part else "dropped" if f"store:{sid}" in dropped
                   else "declined" if sid in declined_ids else "invited")
        stores.append({"store_id": sid, "name": names.get(sid), "outcome": outcome,
                       "patterns_contributed": part and part["patterns_contributed"],
                       "privacy_epsilon": part and part["privacy_epsilon"],
                       "contribution_timestamp": part and part["contribution_timestamp"]})
    rnd["stores"] = stores
    keep = ("epsilon", "delta", "noise_type", "min_utility", "min_utility_ratio", "max_pattern_length", "top_k",
            "window_start", "window_end", "min_clients_required", "proposal_epsilon", "threshold")
    rnd["params"] = {k: params.get(k) for k in keep if k in params}
    return rnd


def round_patterns(conn: psycopg.Connection, scope: Scope, round_id: uuid.UUID, *, limit: int = 20,
                   offset: int = 0) -> dict:
    """The round's global patterns, best utility first: utility, 95 % interval, σ, support, contributing
    stores, coverage and the confident flag."""
    check_page(limit, offset)
    p = {**scope.params(), "id": round_id, "limit": limit, "offset": offset}
    if conn.execute(f"SELECT 1 FROM federated_rounds r WHERE r.id = %(id)s AND {ROUND_IN_SCOPE}", p).fetchone() is None:
        raise NotFound(f"round {round_id} does not exist or is not in your scope")
    total = conn.execute("SELECT count(*) FROM global_patterns WHERE round_id = %(id)s", p).fetchone()[0]
    items = rows(conn.execute(
        """SELECT id, pattern_rank, pattern_items, pattern_length, aggregated_utility::float8 AS utility,
                  utility_ci_low::float8 AS ci_low, utility_ci_high::float8 AS ci_high,
                  utility_stddev::float8 AS stddev, global_support::float8 AS global_support, contributing_stores,
                  client_coverage_percent::float8 AS coverage_percent, confident
             FROM global_patterns WHERE round_id = %(id)s
            ORDER BY aggregated_utility DESC, id LIMIT %(limit)s OFFSET %(offset)s""", p))
    return Page(total, limit, offset, items).as_dict()


def pattern_trend(conn: psycopg.Connection, scope: Scope, items: list[str], *, limit: int = 50) -> dict:
    """The same itemset (order of items ignored) across the completed rounds in scope, oldest first:
    round number, utility and 95 % interval; the last ``limit`` rounds that released it."""
    check_page(limit, 0)
    if not items:
        raise Invalid("items must name at least one item")
    p = {**scope.params(), "items": sorted(set(items)), "limit": limit}
    found = rows(conn.execute(
        f"""SELECT * FROM (
              SELECT r.id AS round_id, r.round_number, r.completed_at, g.aggregated_utility::float8 AS utility,
                     g.utility_ci_low::float8 AS ci_low, g.utility_ci_high::float8 AS ci_high, g.confident
                FROM global_patterns g JOIN federated_rounds r ON r.id = g.round_id
               WHERE r.status = 'completed' AND {ROUND_IN_SCOPE}
                 AND cardinality(g.pattern_items) = cardinality(%(items)s::text[])
                 AND (SELECT array_agg(x ORDER BY x) FROM unnest(g.pattern_items) x) = %(items)s::text[]
               ORDER BY r.round_number DESC LIMIT %(limit)s) t ORDER BY round_number""", p))
    return {"items": p["items"], "points": found}


def round_for_dag_run(conn: psycopg.Connection, scope: Scope, dag_run_id: str) -> uuid.UUID | None:
    """The round a ``federated_round`` DAG run opened (``federated_rounds.dag_run_id``), if in scope."""
    row = conn.execute(f"SELECT r.id FROM federated_rounds r WHERE r.dag_run_id = %(run)s AND {ROUND_IN_SCOPE}",
                       {**scope.params(), "run": dag_run_id}).fetchone()
    return row[0] if row else None
