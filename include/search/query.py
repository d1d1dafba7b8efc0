"""Search functions for the CLI, the API (issue 12) and the dashboards (issue 13).

* :func:`search_patterns` - free text over global pattern items, with ``min_utility`` and a round
  (a number, ``"latest"`` or ``None`` = every round), highlighting, aggregations top items and rounds.
* :func:`search_logs` - activity logs by store, user, action, time and free text, with highlighting
  and the aggregations actions per day and top actions. The :class:`Viewer` decides which stores a
  caller may see: a store manager's query is always held to their own store.
* :func:`rounds_over_time`, :func:`actions_per_day`, :func:`top_items` - the aggregations alone.
* :func:`metric_series` - a performance metric over time (date histogram of avg/min/max).

Every function takes an Elasticsearch client and a :class:`~include.search.indices.Namespace`.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from include.search.indices import Namespace
from include.search.ship import items_text

HIGHLIGHT_TAGS = {"pre_tags": ["<em>"], "post_tags": ["</em>"]}


class AccessDenied(PermissionError):
    """The viewer asked for data outside its scope."""


@dataclass(frozen=True)
class Viewer:
    """Who is asking. ``store_ids=None`` means every store (admin, service); a store manager has exactly
    their own store; a regional coordinator the stores of their region."""

    role: str = "service"
    store_ids: frozenset[str] | None = None
    user_id: str | None = None

    @classmethod
    def admin(cls, user_id=None) -> "Viewer":
        return cls("admin", None, str(user_id) if user_id else None)

    @classmethod
    def store_manager(cls, store_id, user_id=None) -> "Viewer":
        if not store_id:
            raise AccessDenied("a store manager viewer needs its store_id")
        return cls("store_manager", frozenset({str(uuid.UUID(str(store_id)))}), str(user_id) if user_id else None)

    @classmethod
    def regional_coordinator(cls, store_ids: Iterable, user_id=None) -> "Viewer":
        return cls("regional_coordinator", frozenset(str(uuid.UUID(str(s))) for s in store_ids),
                   str(user_id) if user_id else None)

    @classmethod
    def from_context(cls, conn, ctx) -> "Viewer":
        """From an ``include.db.session.AppContext`` (a coordinator's stores are read from ``stores``)."""
        if ctx.role == "store_manager":
            return cls.store_manager(ctx.store_id, ctx.user_id)
        if ctx.role == "regional_coordinator":
            rows = conn.execute("SELECT id FROM stores WHERE region_id = %s", (ctx.region_id,)).fetchall()
            return cls.regional_coordinator([r[0] for r in rows], ctx.user_id)
        if ctx.role == "service" and ctx.store_id:
            return cls("service", frozenset({str(ctx.store_id)}), ctx.user_id)
        return cls(ctx.role, None, ctx.user_id)

    def store_filter(self, requested: str | None) -> list[dict]:
        """The filter clauses that hold a query to this viewer's stores."""
        if requested is not None:
            requested = str(uuid.UUID(str(requested)))
            if self.store_ids is not None and requested not in self.store_ids:
                raise AccessDenied(f"{self.role} may not read the logs of store {requested}")
            return [{"term": {"store_id": requested}}]
        if self.store_ids is None:
            return []
        return [{"terms": {"store_id": sorted(self.store_ids)}}]


def _parse_time(v: str | datetime | None) -> str | None:
    """ISO time, or a relative one: ``15m``, ``24h``, ``7d`` (before now)."""
    if v is None or isinstance(v, datetime):
        return v.isoformat() if v else None
    v = v.strip()
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    if v[:-1].isdigit() and v[-1] in units:
        return (datetime.now(timezone.utc) - timedelta(**{units[v[-1]]: int(v[:-1])})).isoformat()
    return datetime.fromisoformat(v.replace("Z", "+00:00")).isoformat()


# ------------------------------------------------------------------------------------------ patterns
def latest_round(es, ns: Namespace = Namespace(), region: str | None = None) -> int | None:
    """The highest indexed round number (of ``region`` when given)."""
    query = {"bool": {"filter": [{"term": {"region_id": str(region)}}] if region else []}}
    resp = es.search(index=ns.global_patterns, size=0, ignore_unavailable=True, query=query,
                     aggs={"r": {"max": {"field": "round_number"}}})
    v = resp.get("aggregations", {}).get("r", {}).get("value")
    return int(v) if v is not None else None


def search_patterns(es, text: str | None = None, *, ns: Namespace = Namespace(), min_utility: float | None = None,
                    round: int | str | None = "latest", region: str | None = None, confident_only: bool = False,
                    size: int = 20, aggs: bool = True) -> dict:
    """Patterns whose items match ``text`` (all words first, then any), best match then highest utility.

    Returns ``{"round": n|None, "total": n, "hits": [...], "aggregations": {...}}``; each hit has the
    pattern's fields and ``highlight`` (items with ``<em>`` around matched words).
    """
    filters: list[dict] = [{"term": {"region_id": str(region)}}] if region else []
    round_number = None
    if round == "latest":
        round_number = latest_round(es, ns, region)
        if round_number is None:
            return {"round": None, "total": 0, "hits": [], "aggregations": {}}
    elif round not in (None, "all"):
        round_number = int(round)
    if round_number is not None:
        filters.append({"term": {"round_number": round_number}})
    if min_utility is not None:
        filters.append({"range": {"aggregated_utility": {"gte": float(min_utility)}}})
    if confident_only:
        filters.append({"term": {"confident": True}})
    must: list[dict] = []
    should: list[dict] = []
    if text and text.strip():
        q = items_text([text])
        must.append({"match": {"items_text": {"query": q, "operator": "or"}}})
        should.append({"match": {"items_text": {"query": q, "operator": "and", "boost": 2.0}}})
        should.append({"terms": {"pattern_items": text.split(), "boost": 1.0}})
    query = {"bool": {"filter": filters, "must": must or [{"match_all": {}}], "should": should}}
    body: dict[str, Any] = {
        "query": query, "size": size, "track_total_hits": True,
        "sort": ["_score", {"aggregated_utility": "desc"}, {"id": "asc"}] if must else
                [{"aggregated_utility": "desc"}, {"id": "asc"}],
        "highlight": {"fields": {"items_text": {"number_of_fragments": 0}}, **HIGHLIGHT_TAGS},
    }
    if aggs:
        body["aggs"] = {
            "top_items": {"terms": {"field": "pattern_items", "size": 10}},
            "utility": {"stats": {"field": "aggregated_utility"}},
            "by_round": {"terms": {"field": "round_number", "size": 50, "order": {"_key": "asc"}}},
        }
    resp = es.search(index=ns.global_patterns, ignore_unavailable=True, **body)
    hits = []
    for h in resp["hits"]["hits"]:
        d = dict(h["_source"])
        d["score"] = h.get("_score")
        d["highlight"] = (h.get("highlight", {}).get("items_text") or [None])[0]
        hits.append(d)
    out_aggs = {}
    if aggs and "aggregations" in resp:
        a = resp["aggregations"]
        out_aggs = {"top_items": [(b["key"], b["doc_count"]) for b in a["top_items"]["buckets"]],
                    "utility": a["utility"],
                    "by_round": [(b["key"], b["doc_count"]) for b in a["by_round"]["buckets"]]}
    return {"round": round_number, "total": resp["hits"]["total"]["value"], "hits": hits,
            "took_ms": resp.get("took"), "aggregations": out_aggs}


def top_items(es, *, ns: Namespace = Namespace(), round: int | str | None = "latest", size: int = 20) -> list:
    """Items in the most patterns (with their summed utility) of a round or of every round."""
    filters = []
    r = latest_round(es, ns) if round == "latest" else (None if round in (None, "all") else int(round))
    if r is not None:
        filters.append({"term": {"round_number": r}})
    resp = es.search(index=ns.global_patterns, size=0, ignore_unavailable=True,
                     query={"bool": {"filter": filters}},
                     aggs={"items": {"terms": {"field": "pattern_items", "size": size},
                                     "aggs": {"utility": {"sum": {"field": "aggregated_utility"}}}}})
    return [{"item": b["key"], "patterns": b["doc_count"], "utility": b["utility"]["value"]}
            for b in resp.get("aggregations", {}).get("items", {}).get("buckets", [])]


def rounds_over_time(es, *, ns: Namespace = Namespace(), interval: str = "day") -> list:
    """Per calendar interval of round completion: rounds, patterns, max and mean utility."""
    resp = es.search(index=ns.global_patterns, size=0, ignore_unavailable=True, aggs={
        "t": {"date_histogram": {"field": "round_completed_at", "calendar_interval": interval,
                                 "min_doc_count": 1},
              "aggs": {"rounds": {"cardinality": {"field": "round_id"}},
                       "max_utility": {"max": {"field": "aggregated_utility"}},
                       "avg_utility": {"avg": {"field": "aggregated_utility"}}}}})
    return [{"time": b["key_as_string"], "rounds": b["rounds"]["value"], "patterns": b["doc_count"],
             "max_utility": b["max_utility"]["value"], "avg_utility": b["avg_utility"]["value"]}
            for b in resp.get("aggregations", {}).get("t", {}).get("buckets", [])]


# ------------------------------------------------------------------------------------------ logs
def _log_query(viewer: Viewer, store: str | None, user: str | None, action: str | None, since, until,
               text: str | None) -> dict:
    filters = viewer.store_filter(store)
    if user:
        filters.append({"term": {"user_id": str(user)}})
    if action:
        filters.append({"terms": {"action_type": [a.strip() for a in action.split(",") if a.strip()]}})
    rng = {}
    if since:
        rng["gte"] = _parse_time(since)
    if until:
        rng["lt"] = _parse_time(until)
    if rng:
        filters.append({"range": {"created_at": rng}})
    must = []
    if text and text.strip():
        must.append({"multi_match": {"query": text, "fields": ["action_description^2", "user_agent",
                                                               "additional_data"]}})
    return {"bool": {"filter": filters, "must": must or [{"match_all": {}}]}}


def search_logs(es, *, viewer: Viewer, ns: Namespace = Namespace(), store: str | None = None,
                user: str | None = None, action: str | None = None, since: str | datetime | None = None,
                until: str | datetime | None = None, text: str | None = None, size: int = 50,
                aggs: bool = True) -> dict:
    """Activity logs visible to ``viewer``, newest first (best match first with ``text``)."""
    query = _log_query(viewer, store, user, action, since, until, text)
    body: dict[str, Any] = {
        "query": query, "size": size, "track_total_hits": True,
        "sort": (["_score"] if text else []) + [{"created_at": "desc"}, {"id": "asc"}],
        "highlight": {"fields": {"action_description": {"number_of_fragments": 0}, "user_agent": {}},
                      **HIGHLIGHT_TAGS},
    }
    if aggs:
        body["aggs"] = {
            "per_day": {"date_histogram": {"field": "created_at", "calendar_interval": "day", "min_doc_count": 1},
                        "aggs": {"actions": {"terms": {"field": "action_type", "size": 20}}}},
            "top_actions": {"terms": {"field": "action_type", "size": 20}},
            "stores": {"cardinality": {"field": "store_id"}},
        }
    resp = es.search(index=ns.activity_logs(), ignore_unavailable=True, allow_no_indices=True, **body)
    hits = []
    for h in resp["hits"]["hits"]:
        d = dict(h["_source"])
        d["highlight"] = h.get("highlight", {})
        hits.append(d)
    out_aggs = {}
    if aggs and "aggregations" in resp:
        a = resp["aggregations"]
        out_aggs = {
            "actions_per_day": [{"day": b["key_as_string"][:10], "count": b["doc_count"],
                                 "actions": {x["key"]: x["doc_count"] for x in b["actions"]["buckets"]}}
                                for b in a["per_day"]["buckets"]],
            "top_actions": [(b["key"], b["doc_count"]) for b in a["top_actions"]["buckets"]],
            "stores": a["stores"]["value"],
        }
    return {"total": resp["hits"]["total"]["value"], "hits": hits, "took_ms": resp.get("took"),
            "aggregations": out_aggs}


def actions_per_day(es, *, viewer: Viewer, ns: Namespace = Namespace(), since="30d", **filters) -> list:
    return search_logs(es, viewer=viewer, ns=ns, since=since, size=0, **filters)["aggregations"]["actions_per_day"]


# ------------------------------------------------------------------------------------------ metrics
def metric_series(es, metric_type: str, metric_name: str, *, ns: Namespace = Namespace(),
                  viewer: Viewer = Viewer(), store: str | None = None, since="7d", interval: str = "1h") -> list:
    """avg/min/max/count of one metric per fixed interval (``1h``, ``1d``, ...)."""
    filters = viewer.store_filter(store) + [{"term": {"metric_type": metric_type}},
                                            {"term": {"metric_name": metric_name}}]
    if since:
        filters.append({"range": {"recorded_at": {"gte": _parse_time(since)}}})
    resp = es.search(index=ns.metrics(), size=0, ignore_unavailable=True, allow_no_indices=True,
                     query={"bool": {"filter": filters}},
                     aggs={"t": {"date_histogram": {"field": "recorded_at", "fixed_interval": interval,
                                                    "min_doc_count": 1},
                                 "aggs": {"v": {"stats": {"field": "metric_value"}}}}})
    return [{"time": b["key_as_string"], "count": b["v"]["count"], "avg": b["v"]["avg"], "min": b["v"]["min"],
             "max": b["v"]["max"]} for b in resp.get("aggregations", {}).get("t", {}).get("buckets", [])]
