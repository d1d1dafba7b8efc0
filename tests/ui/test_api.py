"""The dashboards' JSON endpoints on the real api-server: role scope (a store manager only ever gets their
store, through any endpoint), refusals, server-side paging and the audit row of every read."""
from __future__ import annotations

import uuid

import pytest


def _ids(items, key="store_id"):
    return {uuid.UUID(str(i[key])) for i in items}


def test_no_token_is_401(server):
    for path in ("/dashboards/rounds", "/dashboards/api/rounds", "/dashboards/api/privacy"):
        assert server.get(path, None).status_code == 401, path


@pytest.mark.parametrize("path", ["/dashboards/api/privacy", "/dashboards/api/ingestion/files",
                                  "/dashboards/api/ingestion/errors", "/dashboards/api/mining/stores",
                                  "/dashboards/api/mining/jobs"])
def test_store_manager_sees_only_their_store(server, ui_world, path):
    tok = server.token(ui_world, "sm_a")
    r = server.get(path, tok)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] > 0 and _ids(body["items"]) == {ui_world.stores["a"]}
    other = server.get(f"{path}?store_id={ui_world.stores['b']}", tok)
    assert other.status_code == 403 and "not yours" in other.json()["detail"]


def test_store_manager_cannot_open_other_stores_or_rounds(server, ui_world, db):
    tok = server.token(ui_world, "sm_a")
    assert server.get(f"/dashboards/api/privacy/stores/{ui_world.stores['a']}", tok).status_code == 200
    assert server.get(f"/dashboards/api/privacy/stores/{ui_world.stores['b']}", tok).status_code == 403
    assert server.get(f"/dashboards/api/privacy/stores/{uuid.uuid4()}", tok).status_code == 404
    r = server.get("/dashboards/api/rounds", tok)   # the platform's permission table: no rounds for stores
    assert r.status_code == 403 and "store_manager may not read rounds" in r.json()["detail"]
    assert server.get(f"/dashboards/api/rounds/{ui_world.rounds[0]}", tok).status_code == 403
    rows = server.get("/dashboards/api/ingestion/rows?days=60", tok).json()["points"]
    loaded = db.execute("""SELECT COALESCE(sum(metric_value), 0) FROM performance_metrics
                            WHERE metric_type = 'ingestion' AND metric_name = 'rows_loaded' AND store_id = %s""",
                        (ui_world.stores["a"],)).fetchone()[0]
    assert sum(p["rows_loaded"] for p in rows) == loaded


def test_coordinator_sees_their_region(server, ui_world, db):
    tok = server.token(ui_world, "coord_r1")
    body = server.get("/dashboards/api/privacy", tok).json()
    assert _ids(body["items"]) == {ui_world.stores[s] for s in "acd"}
    assert server.get(f"/dashboards/api/privacy/stores/{ui_world.stores['b']}", tok).status_code == 403
    rounds = server.get("/dashboards/api/rounds?limit=500", tok).json()
    expected = db.execute("SELECT count(*) FROM federated_rounds WHERE region_id = %s", (ui_world.r1,)).fetchone()[0]
    assert rounds["total"] == expected == len(rounds["items"]) > 0
    assert {str(r["region_id"]) for r in rounds["items"]} == {str(ui_world.r1)}
    r2_round = db.execute("SELECT id FROM federated_rounds WHERE region_id = %s LIMIT 1", (ui_world.r2,)).fetchone()[0]
    assert server.get(f"/dashboards/api/rounds/{r2_round}", tok).status_code == 404
    assert server.get("/dashboards/api/ingestion/files", tok).status_code == 403


def test_paging_is_on_the_server(server, ui_world, db):
    tok = server.token(ui_world, "admin")
    numbers = [r[0] for r in db.execute("SELECT round_number FROM federated_rounds ORDER BY round_number DESC")]
    page = server.get("/dashboards/api/rounds?limit=3&offset=2", tok).json()
    assert page["total"] == len(numbers) and [r["round_number"] for r in page["items"]] == numbers[2:5]
    assert server.get("/dashboards/api/rounds?limit=501", tok).status_code == 422
    pats = server.get(f"/dashboards/api/rounds/{ui_world.rounds[0]}/patterns?limit=2&offset=1", tok).json()
    utils = [float(u) for (u,) in db.execute(
        "SELECT aggregated_utility FROM global_patterns WHERE round_id = %s ORDER BY aggregated_utility DESC, id",
        (ui_world.rounds[0],))]
    assert pats["total"] == len(utils) and [p["utility"] for p in pats["items"]] == utils[1:3]


def test_every_read_is_audited(server, ui_world, db):
    tok = server.token(ui_world, "sm_a")
    before = db.execute("SELECT count(*) FROM activity_logs WHERE action_type = 'api_dashboard_mining_jobs'").fetchone()[0]
    assert server.get("/dashboards/api/mining/jobs", tok).status_code == 200
    assert server.get(f"/dashboards/api/mining/jobs?store_id={ui_world.stores['b']}", tok).status_code == 403
    db.commit()
    rows = db.execute("""SELECT user_id, additional_data->>'status' FROM activity_logs
                          WHERE action_type = 'api_dashboard_mining_jobs' ORDER BY created_at""").fetchall()
    assert len(rows) == before + 2
    assert [r[1] for r in rows[-2:]] == ["200", "403"] and rows[-1][0] == ui_world.users["sm_a"]


def test_search_is_held_to_the_region(server, ui_world, db):
    tok = server.token(ui_world, "coord_r1")
    r = server.get("/dashboards/api/search?q=wine&round=all&size=100", tok)
    assert r.status_code == 200, r.text
    region_rounds = {n for (n,) in db.execute("SELECT round_number FROM federated_rounds WHERE region_id = %s",
                                              (ui_world.r1,))}
    hits = r.json()["hits"]
    assert hits and {h["round_number"] for h in hits} <= region_rounds
    assert server.get("/dashboards/api/search?q=wine", server.token(ui_world, "sm_a")).status_code == 403
    assert server.get("/dashboards/api/search?q=wine&round=x", tok).status_code == 422


def test_dag_run_tab_resolves_the_run_round(server, ui_world, db):
    """The "Round" tab of a federated_round DAG run opens round?dag_run_id={RUN_ID}: the run's round."""
    tok = server.token(ui_world, "admin")
    rid, run_id = db.execute("SELECT id, dag_run_id FROM federated_rounds ORDER BY round_number LIMIT 1").fetchone()
    assert server.get(f"/dashboards/api/rounds?dag_run_id={run_id}", tok).json() == {"round_id": str(rid)}
    assert server.get("/dashboards/api/rounds?dag_run_id=manual__none", tok).json() == {"round_id": None}
