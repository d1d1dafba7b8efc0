"""Search box of the Rounds page: global patterns by their items (Elasticsearch, include.search.query),
held to the caller's region, each hit linked to its round.

Contract: ``es`` is an elasticsearch-py client, ``ns`` the index namespace the ``index_search`` DAG ships
to. A store scope cannot search (global patterns are not a store's); a region scope sees its rounds only."""
from __future__ import annotations

from include.dashboards import Invalid, Scope
from include.search.indices import Namespace
from include.search.query import search_patterns

FIELDS = ("round_id", "round_number", "pattern_items", "aggregated_utility", "utility_ci_low", "utility_ci_high",
          "confident", "client_coverage_percent")


def search(es, scope: Scope, text: str, *, round: str = "latest", size: int = 20, ns: Namespace = Namespace()) -> dict:
    """Patterns matching ``text`` in the latest round (``round="latest"``), every round (``"all"``) or
    round number ``round``; best match first. ``{"round", "total", "hits": [{FIELDS...}]}``."""
    if scope.store_id is not None:
        raise Invalid("a store scope cannot search global patterns")
    if not (text or "").strip() or len(text) > 200:
        raise Invalid("q must have 1 to 200 characters")
    if round not in ("latest", "all") and not round.isdigit():
        raise Invalid(f"round must be latest, all or a round number, got {round!r}")
    if not 1 <= size <= 100:
        raise Invalid(f"size must be between 1 and 100, got {size}")
    r = search_patterns(es, text, ns=ns, round=round, region=str(scope.region_id) if scope.region_id else None,
                        size=size, aggs=False)
    return {"round": r["round"], "total": r["total"],
            "hits": [{k: h.get(k) for k in FIELDS} for h in r["hits"]]}
