"""The dashboards' JSON endpoints on the real api-server, on the data of the real pipeline run
(``pipeline_world``): role scope (a store manager only ever gets their store, through any endpoint, and
cannot download another store's rejects either), refusals, server-side paging and the audit row of every
read. A second region's isolation is in test_seeded.py (the real run has one region)."""
from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest


def _ids(items, key="store_id"):
    return {uuid.UUID(str(i[key])) for i in items}


def test_no_token_is_401(server):
    for path in ("/dashboards/rounds", "/dashboards/api/rounds", "/dashboards/api/privacy"):
        assert server.get(path, None).status_code == 401, path


@pytest.mark.parametrize("path", ["/dashboards/api/privacy", "/dashboards/api/ingestion/files",
                                  "/dashboards/api/ingestion/errors", "/dashboards/api/mining/stores",
                                  "/dashboards/api/mining/jobs"])
def test_store_manager_sees_only_their_store(server, pipeline_world, path):
    tok = server.token(pipeline_world, "sm_a")
    r = server.get(path, tok)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] > 0 and _ids(body["items"]) == {pipeline_world.stores["a"]}
    other = server.get(f"{path}?store_id={pipeline_world.stores['b']}", tok)
    assert other.status_code == 403 and "not yours" in other.json()["detail"]


def test_store_manager_cannot_open_other_stores_or_rounds(server, pipeline_world, db):
    w = pipeline_world
    tok = server.token(w, "sm_a")
    assert server.get(f"/dashboards/api/privacy/stores/{w.stores['a']}", tok).status_code == 200
    assert server.get(f"/dashboards/api/privacy/stores/{w.stores['b']}", tok).status_code == 403
    assert server.get(f"/dashboards/api/privacy/stores/{uuid.uuid4()}", tok).status_code == 404
    r = server.get("/dashboards/api/rounds", tok)   # the platform's permission table: no rounds for stores
    assert r.status_code == 403 and "store_manager may not read rounds" in r.json()["detail"]
    assert server.get(f"/dashboards/api/rounds/{w.rounds[0]}", tok).status_code == 403
    assert server.get(f"/dashboards/api/rounds/{w.rounds[0]}/patterns", tok).status_code == 403
    rows = server.get("/dashboards/api/ingestion/rows?days=60", tok).json()["points"]
    loaded, rejected = db.execute(
        """SELECT COALESCE(sum(metric_value) FILTER (WHERE metric_name = 'rows_loaded'), 0),
                  COALESCE(sum(metric_value) FILTER (WHERE metric_name = 'rows_rejected'), 0)
             FROM performance_metrics WHERE metric_type = 'ingestion' AND store_id = %s""", (w.stores["a"],)).fetchone()
    assert sum(p["rows_loaded"] for p in rows) == loaded == 300
    assert sum(p["rows_rejected"] for p in rows) == rejected == 10


def test_rejects_only_for_their_own_store(server, pipeline_world, db):
    """The rejects link of the malformed file (store a): its store manager and the admin download the CSV
    (from the real S3 server); the manager of store b gets 403 through the dashboards and the platform API."""
    w = pipeline_world
    (item,) = server.get("/dashboards/api/ingestion/errors", server.token(w, "sm_a")).json()["items"]
    file_id, rejected = db.execute("""SELECT f.id::text, m.metric_value FROM transaction_files f
                                        JOIN performance_metrics m ON m.metadata->>'file_id' = f.id::text
                                                                  AND m.metric_name = 'rows_rejected'
                                       WHERE f.processing_status = 'failed'""").fetchone()
    assert item["file_id"] == file_id and item["rows_rejected"] == rejected == 10
    assert item["rejects_url"] == f"/platform/v1/stores/{w.stores['a']}/files/{file_id}/rejects"
    for who in ("sm_a", "admin"):
        r = server.get(item["rejects_url"], server.token(w, who))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), (who, r.text)
        assert len(r.text.strip().splitlines()) == 1 + rejected
    tok_b = server.token(w, "sm_b")
    assert server.get(item["rejects_url"], tok_b).status_code == 403
    assert server.get(f"/dashboards/api/ingestion/errors?store_id={w.stores['a']}", tok_b).status_code == 403
    assert server.get("/dashboards/api/ingestion/errors", tok_b).json()["total"] == 0


def test_coordinator_sees_their_region(server, pipeline_world, db):
    w = pipeline_world
    tok = server.token(w, "coord_r1")
    body = server.get("/dashboards/api/privacy", tok).json()
    assert _ids(body["items"]) == set(w.stores.values())
    rounds = server.get("/dashboards/api/rounds?limit=500", tok).json()
    expected = db.execute("SELECT count(*) FROM federated_rounds WHERE region_id = %s", (w.r1,)).fetchone()[0]
    assert rounds["total"] == expected == len(rounds["items"]) == len(w.rounds)
    assert {str(r["region_id"]) for r in rounds["items"]} == {str(w.r1)}
    assert server.get("/dashboards/api/ingestion/files", tok).status_code == 403
    assert server.get("/dashboards/api/mining/jobs", tok).status_code == 403


def test_paging_is_on_the_server(server, pipeline_world, db):
    w = pipeline_world
    tok = server.token(w, "admin")
    numbers = [r[0] for r in db.execute("SELECT round_number FROM federated_rounds ORDER BY round_number DESC")]
    page = server.get("/dashboards/api/rounds?limit=1&offset=1", tok).json()
    assert page["total"] == len(numbers) == 2 and [r["round_number"] for r in page["items"]] == numbers[1:2]
    assert server.get("/dashboards/api/rounds?limit=501", tok).status_code == 422
    rid = db.execute("SELECT id FROM federated_rounds ORDER BY patterns_aggregated DESC, round_number LIMIT 1").fetchone()[0]
    pats = server.get(f"/dashboards/api/rounds/{rid}/patterns?limit=2&offset=1", tok).json()
    utils = [float(u) for (u,) in db.execute(
        "SELECT aggregated_utility FROM global_patterns WHERE round_id = %s ORDER BY aggregated_utility DESC, id",
        (rid,))]
    assert pats["total"] == len(utils) >= 2 and [p["utility"] for p in pats["items"]] == utils[1:3]
    jobs = server.get("/dashboards/api/mining/jobs?limit=1&offset=2", tok).json()
    assert jobs["total"] == 3 and len(jobs["items"]) == 1


def test_every_read_is_audited(server, pipeline_world, db):
    w = pipeline_world
    tok = server.token(w, "sm_a")
    before = db.execute("SELECT count(*) FROM activity_logs WHERE action_type = 'api_dashboard_mining_jobs'").fetchone()[0]
    assert server.get("/dashboards/api/mining/jobs", tok).status_code == 200
    assert server.get(f"/dashboards/api/mining/jobs?store_id={w.stores['b']}", tok).status_code == 403
    db.commit()
    rows = db.execute("""SELECT user_id, additional_data->>'status' FROM activity_logs
                          WHERE action_type = 'api_dashboard_mining_jobs' ORDER BY created_at""").fetchall()
    assert len(rows) == before + 2
    assert [r[1] for r in rows[-2:]] == ["200", "403"] and rows[-1][0] == w.users["sm_a"]


def test_search_answers_by_role(server, pipeline_world, db):
    """The real run's patterns, shipped by its index_search DAG run, found by the coordinator of their region;
    refused to a store manager; a bad round is 422."""
    w = pipeline_world
    tok = server.token(w, "coord_r1")
    items = db.execute("""SELECT g.pattern_items FROM global_patterns g JOIN federated_rounds r ON r.id = g.round_id
                           WHERE r.round_number = 2 ORDER BY g.aggregated_utility DESC, g.id LIMIT 1""").fetchone()[0]
    r = server.get(f"/dashboards/api/search?q={quote(items[0])}&round=latest&size=100", tok)
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits and {h["round_number"] for h in hits} == {2}
    assert any(h["pattern_items"] == items for h in hits)
    assert server.get("/dashboards/api/search?q=wine", server.token(w, "sm_a")).status_code == 403
    assert server.get("/dashboards/api/search?q=wine&round=x", tok).status_code == 422


def test_dag_run_tab_resolves_the_run_round(server, pipeline_world, db):
    """The "Round" tab of a federated_round DAG run opens round?dag_run_id={RUN_ID}: the run's round."""
    w = pipeline_world
    tok = server.token(w, "admin")
    for run_id, rid in zip(w.dag_runs["federated_round"], w.rounds):
        assert db.execute("SELECT dag_run_id FROM federated_rounds WHERE id = %s", (rid,)).fetchone()[0] == run_id
        assert server.get(f"/dashboards/api/rounds?dag_run_id={quote(run_id, safe='')}", tok).json() == {"round_id": str(rid)}
    mine_run = w.dag_runs["mine_store_patterns"][0]
    assert server.get(f"/dashboards/api/rounds?dag_run_id={quote(mine_run, safe='')}", tok).json() == {"round_id": None}
