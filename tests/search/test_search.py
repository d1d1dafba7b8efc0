"""Search functions and the CLI: a planted pattern is found, a store manager sees only their store."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from include.search.query import (AccessDenied, Viewer, actions_per_day, metric_series, rounds_over_time,
                                  search_logs, search_patterns, top_items)
from include.search.ship import ship_all
from tests.search.conftest import add_logs, add_metrics, add_round, make_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(es, ns, conn):
    s1, s2 = make_store(conn), make_store(conn)
    add_logs(conn, [s1], 300, seed=11, span=timedelta(days=5))
    add_logs(conn, [s2], 300, seed=12, span=timedelta(days=5))
    add_logs(conn, [s2], 3, seed=13, span=timedelta(hours=1), description="secret pricing export of store two")
    add_metrics(conn, [s1, s2], 200)
    add_round(conn, [(["bread", "milk"], 40.0), (["wine", "crackers"], 55.0)])
    add_round(conn, [(["Bordeaux_wine", "Comte_cheese"], 987.5), (["wine", "bread"], 120.0),
                     (["cheese_board"], 80.0), (["milk"], 5.0)])
    ship_all(conn, es, ns=ns, reconcile="never")
    return {"s1": str(s1), "s2": str(s2)}


def test_planted_pattern_is_found_with_highlight_and_aggregations(es, ns, world):
    res = search_patterns(es, "wine cheese", ns=ns)
    assert res["round"] == 2
    assert res["hits"][0]["pattern_items"] == ["Bordeaux_wine", "Comte_cheese"]   # both words, top utility
    assert res["hits"][0]["highlight"] == "Bordeaux <em>wine</em> Comte <em>cheese</em>"
    assert {tuple(h["pattern_items"]) for h in res["hits"]} == {
        ("Bordeaux_wine", "Comte_cheese"), ("wine", "bread"), ("cheese_board",)}
    assert dict(res["aggregations"]["by_round"]) == {2: 3}
    assert res["aggregations"]["utility"]["max"] == 987.5
    assert [h["pattern_items"] for h in search_patterns(es, "wine", ns=ns, min_utility=500)["hits"]] == \
        [["Bordeaux_wine", "Comte_cheese"]]
    assert [h["pattern_items"] for h in search_patterns(es, "wine", ns=ns, round=1)["hits"]] == [["wine", "crackers"]]
    assert search_patterns(es, "wine", ns=ns, round="all")["total"] == 3
    assert search_patterns(es, "caviar", ns=ns)["total"] == 0
    items = {t["item"]: t["patterns"] for t in top_items(es, ns=ns, round="all")}
    assert items["wine"] == 2 and items["milk"] == 2
    over_time = rounds_over_time(es, ns=ns)
    assert sum(b["rounds"] for b in over_time) == 2 and sum(b["patterns"] for b in over_time) == 6


def test_store_manager_never_sees_another_stores_logs(es, ns, world):
    s1, s2 = world["s1"], world["s2"]
    mine = search_logs(es, viewer=Viewer.store_manager(s1), ns=ns, size=1000)
    assert mine["total"] == 300 and {h["store_id"] for h in mine["hits"]} == {s1}
    assert search_logs(es, viewer=Viewer.store_manager(s1), ns=ns, text="secret pricing export")["total"] == 0
    with pytest.raises(AccessDenied):
        search_logs(es, viewer=Viewer.store_manager(s1), ns=ns, store=s2)
    days = actions_per_day(es, viewer=Viewer.store_manager(s1), ns=ns, since="30d")
    assert sum(d["count"] for d in days) == 300
    # an admin sees both, filters and highlighting work
    admin = search_logs(es, viewer=Viewer.admin(), ns=ns, text="secret pricing", since="1d")
    assert admin["total"] == 3 and {h["store_id"] for h in admin["hits"]} == {s2}
    assert "<em>secret</em>" in admin["hits"][0]["highlight"]["action_description"][0]
    by_action = search_logs(es, viewer=Viewer.admin(), ns=ns, store=s1, action="login,config_changed", size=0)
    assert 0 < by_action["total"] < 300
    assert set(dict(by_action["aggregations"]["top_actions"])) <= {"login", "config_changed"}
    coord = search_logs(es, viewer=Viewer.regional_coordinator([s2]), ns=ns, size=0)
    assert coord["total"] == 303
    series = metric_series(es, "mining", "duration_seconds", ns=ns, viewer=Viewer.store_manager(s1), since="30d",
                           interval="1d")
    assert series and all(b["count"] > 0 for b in series)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "include.search", *args], capture_output=True, text=True,
                          cwd=ROOT, env=os.environ, timeout=300)


def test_cli_patterns_and_logs(es, ns, world):
    out = _cli("--prefix", ns.prefix, "patterns", "wine cheese", "--min-utility", "100")
    assert out.returncode == 0, out.stderr
    assert "Bordeaux <em>wine</em> Comte <em>cheese</em>" in out.stdout and "round:" in out.stdout
    data = json.loads(_cli("--prefix", ns.prefix, "patterns", "wine", "--round", "1", "--json").stdout)
    assert [h["pattern_items"] for h in data["hits"]] == [["wine", "crackers"]]
    logs = _cli("--prefix", ns.prefix, "logs", "--as-store-manager", world["s1"], "--since", "30d", "--json")
    assert logs.returncode == 0, logs.stderr
    assert {h["store_id"] for h in json.loads(logs.stdout)["hits"]} == {world["s1"]}
    denied = _cli("--prefix", ns.prefix, "logs", "--as-store-manager", world["s1"], "--store", world["s2"])
    assert denied.returncode == 1 and "may not read" in denied.stderr
    text = _cli("--prefix", ns.prefix, "logs", "--text", "secret pricing", "--action", "login,file_uploaded,"
                "file_validated,mining_started,mining_completed,config_changed")
    assert text.returncode == 0 and "matches: 3" in text.stdout and "actions per day" in text.stdout
