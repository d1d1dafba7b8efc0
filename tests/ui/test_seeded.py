"""What a short real pipeline run cannot show, on seeded rows (``seeded_world``: include/dashboards/seed.py,
a database and an api-server of this module's own): a store near budget exhaustion and the global cap on
the privacy page, a round with a dropout and a failed round, a second region that a coordinator of the
first can neither list nor open nor search. The pages are checked against the database with the same
generic checks as the real run's (tests/ui/pages.py)."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.ui.pages import check_privacy_page, check_round_page, check_rounds_page, login, open_page


@pytest.fixture
def seeded_admin(driver, seeded_server, seeded_world):
    login(driver, seeded_server, seeded_server.token(seeded_world, "admin"))
    return driver


def test_privacy_warning_and_cap(seeded_admin, seeded_server, seeded_db, seeded_world):
    assert open_page(seeded_admin, seeded_server, "privacy", "privacy-warning") == []
    seen = check_privacy_page(seeded_admin, seeded_db, seeded_world.stores.values())
    assert seeded_admin.find_element(By.CSS_SELECTOR, "#cap [data-k='global_epsilon']").text == "ε 3.0000"
    c_store = str(seeded_world.stores["c"])
    assert seen["table"][c_store]["status"] in ("warning", "exhausted")
    assert seeded_world.names["c"] in seeded_admin.find_element(By.ID, "warnings").text


def test_failed_round_and_dropouts(seeded_admin, seeded_server, seeded_db):
    assert open_page(seeded_admin, seeded_server, "rounds") == []
    rows = check_rounds_page(seeded_admin, seeded_db)
    assert {"completed", "failed"} <= {r[2] for r in rows}
    rid = seeded_db.execute("""SELECT id FROM federated_rounds WHERE status = 'completed'
                                 AND levels->0->'dropped' <> '[]' ORDER BY round_number LIMIT 1""").fetchone()[0]
    assert open_page(seeded_admin, seeded_server, f"round?id={rid}", "round-dropout") == []
    assert check_round_page(seeded_admin, seeded_db, rid)["dropped"] != set()


def test_coordinator_sees_their_region_only(seeded_server, seeded_world, seeded_db):
    w, tok = seeded_world, seeded_server.token(seeded_world, "coord_r1")
    body = seeded_server.get("/dashboards/api/privacy", tok).json()
    assert {i["store_id"] for i in body["items"]} == {str(w.stores[s]) for s in "acd"}
    assert seeded_server.get(f"/dashboards/api/privacy/stores/{w.stores['b']}", tok).status_code == 403
    rounds = seeded_server.get("/dashboards/api/rounds?limit=500", tok).json()
    expected = seeded_db.execute("SELECT count(*) FROM federated_rounds WHERE region_id = %s", (w.r1,)).fetchone()[0]
    assert rounds["total"] == expected == len(rounds["items"]) > 0
    assert {str(r["region_id"]) for r in rounds["items"]} == {str(w.r1)}
    r2_round = seeded_db.execute("SELECT id FROM federated_rounds WHERE region_id = %s LIMIT 1", (w.r2,)).fetchone()[0]
    assert seeded_server.get(f"/dashboards/api/rounds/{r2_round}", tok).status_code == 404
    assert seeded_server.get(f"/dashboards/api/rounds/{r2_round}/patterns", tok).status_code == 404


def test_search_is_held_to_the_region(seeded_server, seeded_world, seeded_db):
    w, tok = seeded_world, seeded_server.token(seeded_world, "coord_r1")
    with_wine = dict(seeded_db.execute(
        """SELECT DISTINCT r.round_number, r.region_id FROM global_patterns g JOIN federated_rounds r ON r.id = g.round_id
            WHERE r.status = 'completed' AND 'wine' = ANY(g.pattern_items)""").fetchall())
    assert set(with_wine.values()) == {w.r1, w.r2}
    r = seeded_server.get("/dashboards/api/search?q=wine&round=all&size=100", tok)
    assert r.status_code == 200, r.text
    assert {h["round_number"] for h in r.json()["hits"]} == {n for n, reg in with_wine.items() if reg == w.r1}
    everywhere = seeded_server.get("/dashboards/api/search?q=wine&round=all&size=100",
                                   seeded_server.token(w, "admin")).json()["hits"]
    assert {h["round_number"] for h in everywhere} == set(with_wine)


def test_store_manager_of_another_region(driver, seeded_server, seeded_world):
    """The manager of store b (region r2) sees store b only in the browser, as store a's manager sees a."""
    login(driver, seeded_server, seeded_server.token(seeded_world, "sm_b"))
    b = str(seeded_world.stores["b"])
    for page, table in (("privacy", "budgets"), ("ingestion", "files"), ("mining", "mining-stores")):
        assert open_page(driver, seeded_server, page) == []
        rows = driver.execute_script("return Array.from(document.querySelectorAll(`#${arguments[0]} tbody tr`))"
                                     ".map(tr => tr.dataset.id);", table)
        assert rows == [b], page
