"""The dashboard pages in headless Chromium against the real api-server: each page loads with no console
error, the numbers in its tables and charts equal the database's, a store manager sees only their store
and is refused the others'; the pages also render inside Airflow's UI (nav view). Screenshots go to
tests/artifacts/ui/."""
from __future__ import annotations

import json
import time
from collections import Counter, defaultdict

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.ui.conftest import ARTIFACTS

TABLE_JS = """return Array.from(document.querySelectorAll(`#${arguments[0]} tbody tr`)).map(tr => ({
  id: tr.dataset.id, cells: Object.fromEntries(Array.from(tr.querySelectorAll('td')).map(td =>
  [td.dataset.k, td.textContent.trim()])), links: Array.from(tr.querySelectorAll('a')).map(a => a.getAttribute('href'))}));"""
CHARTS_JS = """return Object.fromEntries(Object.entries(window.dashCharts).map(([k, c]) => [k, {labels: c.data.labels,
  datasets: c.data.datasets.map(d => ({label: d.label, data: d.data, intervals: d.intervals || null}))}]));"""


def login(driver, server, token):
    driver.get(f"{server.base}/dashboards/static/style.css")   # any same-origin URL, then the cookie
    driver.delete_all_cookies()
    driver.add_cookie({"name": "_token", "value": token, "path": "/"})


def open_page(driver, server, path, shot: str | None = None) -> list[dict]:
    """Load a dashboards page, wait until it has rendered; returns the console's SEVERE entries."""
    driver.get_log("browser")
    driver.get(f"{server.base}/dashboards/{path}")
    WebDriverWait(driver, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "body[data-ready='1']")))
    if shot:
        driver.save_screenshot(str(ARTIFACTS / f"{shot}.png"))
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def num(text: str) -> float | None:
    return None if text in ("–", "") else float(text)


def close(shown: str, value, decimals: int) -> bool:
    if value is None:
        return shown == "–"
    return abs(num(shown) - float(value)) <= 0.5 * 10 ** -decimals + 1e-9


@pytest.fixture
def as_admin(driver, server, ui_world):
    login(driver, server, server.token(ui_world, "admin"))
    return driver


def test_rounds_page(as_admin, server, db):
    errors = open_page(as_admin, server, "rounds", "rounds")
    assert errors == []
    shown = {r["id"]: r["cells"] for r in as_admin.execute_script(TABLE_JS, "rounds")}
    rows = db.execute("""SELECT id::text, round_number, status, participating_clients, duration_seconds, levels,
                                params, patterns_aggregated,
                                (SELECT COALESCE(sum(privacy_epsilon), 0) FROM round_participations p WHERE p.round_id = r.id)
                           FROM federated_rounds r""").fetchall()
    assert set(shown) == {r[0] for r in rows}
    for rid, number, status, parts, dur, levels, params, npat, eps in rows:
        c = shown[rid]
        dropouts = len({d for lv in levels for d in lv["dropped"]})
        assert (c["round_number"], c["status"]) == (str(number), status)
        assert (int(c["participants"]), int(c["dropouts"]), int(c["invited"]), int(c["patterns_aggregated"])) == \
            (parts, dropouts, len(params["store_ids"]), npat)
        assert close(c["duration_seconds"], dur, 1) and close(c["epsilon_spent"], eps, 4)
    charts = as_admin.execute_script(CHARTS_JS)
    by_status = Counter(r[2] for r in rows)
    assert dict(zip(charts["status"]["labels"], charts["status"]["datasets"][0]["data"])) == by_status
    assert sorted(charts["duration"]["datasets"][0]["data"]) == pytest.approx(sorted(float(r[4]) for r in rows))


def test_round_page(as_admin, server, db, ui_world):
    rid, levels, number = db.execute(
        """SELECT id, levels, round_number FROM federated_rounds
            WHERE status = 'completed' AND levels->0->'dropped' <> '[]' ORDER BY round_number LIMIT 1""").fetchone()
    assert open_page(as_admin, server, f"round?id={rid}", "round") == []
    assert as_admin.find_element(By.ID, "title").text == f"Round {number}"
    shown_levels = [r["cells"] for r in as_admin.execute_script(TABLE_JS, "levels")]
    assert [(int(c["level"]), int(c["survivors"]), int(c["dropped"])) for c in shown_levels] == \
        [(lv["level"], lv["survivors"], len(lv["dropped"])) for lv in levels]
    assert all(close(c["seconds"], lv["seconds"], 3) for c, lv in zip(shown_levels, levels))
    stores = {r["id"]: r["cells"]["outcome"] for r in as_admin.execute_script(TABLE_JS, "stores")}
    parts = {str(s) for (s,) in db.execute("SELECT store_id FROM round_participations WHERE round_id = %s", (rid,))}
    dropped = {d.removeprefix("store:") for lv in levels for d in lv["dropped"]}
    assert {s for s, o in stores.items() if o == "participated"} == parts
    assert {s for s, o in stores.items() if o == "dropped"} == dropped != set()
    top = db.execute("""SELECT pattern_items, aggregated_utility, utility_ci_low, utility_ci_high, confident,
                               client_coverage_percent
                          FROM global_patterns WHERE round_id = %s ORDER BY aggregated_utility DESC, id LIMIT 20""",
                     (rid,)).fetchall()
    chart = as_admin.execute_script(CHARTS_JS)["patterns"]
    assert chart["labels"] == [", ".join(t[0]) for t in top]
    assert chart["datasets"][0]["data"] == pytest.approx([float(t[1]) for t in top])
    assert [x for iv in chart["datasets"][0]["intervals"] for x in iv] == \
        pytest.approx([float(v) for t in top for v in (t[2], t[3])])
    table = [r["cells"] for r in as_admin.execute_script(TABLE_JS, "patterns")]
    assert [c["confident"] for c in table] == ["yes" if t[4] else "no" for t in top]
    assert all(close(c["coverage_percent"], t[5], 1) and close(c["utility"], t[1], 2) for c, t in zip(table, top))
    # the trend of the best pattern across the completed rounds
    trend = as_admin.execute_script(CHARTS_JS)["trend"]
    pts = db.execute("""SELECT r.round_number, g.aggregated_utility FROM global_patterns g
                          JOIN federated_rounds r ON r.id = g.round_id
                         WHERE r.status = 'completed' AND g.pattern_items = %s ORDER BY r.round_number""",
                     (sorted(top[0][0]),)).fetchall()
    assert trend["labels"] == [f"#{n}" for n, _ in pts] and trend["datasets"][0]["data"] == pytest.approx([float(u) for _, u in pts])


def _expected_spent(db) -> dict[str, float]:
    """The worst transaction's spend per store: max over instants of the ε of the windows covering it."""
    charges = defaultdict(list)
    for s, ws, we, eps in db.execute("""SELECT store_id::text, window_start, window_end, epsilon
                                          FROM privacy_budget_ledger WHERE status <> 'aborted'"""):
        charges[s].append((ws, we, eps))
    return {s: max(sum(e for a, b, e in cs if a <= t < b) for t, _, _ in cs) for s, cs in charges.items()}


def test_privacy_page(as_admin, server, db, ui_world):
    assert open_page(as_admin, server, "privacy", "privacy") == []
    spent = _expected_spent(db)
    lifetime = {str(s): float(e) for s, e in db.execute("SELECT store_id, epsilon FROM privacy_configs")}
    table = {r["id"]: r["cells"] for r in as_admin.execute_script(TABLE_JS, "budgets")}
    assert set(table) == {str(s) for s in ui_world.stores.values()}
    for sid, c in table.items():
        assert close(c["spent_epsilon"], spent.get(sid, 0.0), 4) and close(c["lifetime_epsilon"], lifetime[sid], 4)
        frac = spent.get(sid, 0.0) / lifetime[sid]
        assert c["status"] == ("exhausted" if frac >= 1 else "warning" if frac >= 0.8 else "ok")
    assert as_admin.find_element(By.CSS_SELECTOR, "#cap [data-k='global_epsilon']").text == "ε 3.0000"
    c_store = str(ui_world.stores["c"])
    assert table[c_store]["status"] in ("warning", "exhausted")
    assert "t-ui-c" in as_admin.find_element(By.ID, "warnings").text
    charts = as_admin.execute_script(CHARTS_JS)
    names = dict(db.execute("SELECT name, id::text FROM stores"))
    assert charts["budgets"]["datasets"][2]["data"] == [3.0] * len(table)   # the cap line
    assert dict(zip(charts["budgets"]["labels"], charts["budgets"]["datasets"][0]["data"])) == \
        pytest.approx({n: spent.get(names[n], 0.0) for n in charts["budgets"]["labels"]})
    # the series of the first store ends at its spend
    first = charts["series"]["datasets"][0]
    sid = names[first["label"].split(":")[0]]
    assert first["data"][-1] == pytest.approx(spent[sid])


def test_ingestion_page(as_admin, server, db):
    assert open_page(as_admin, server, "ingestion", "ingestion") == []
    totals = dict(db.execute("SELECT processing_status, count(*) FROM transaction_files GROUP BY 1").fetchall())
    shown = {e.get_attribute("data-k"): e.text for e in as_admin.find_elements(By.CSS_SELECTOR, "#totals span")}
    for st in ("pending", "processing", "completed", "failed"):
        assert shown[st] == f"{st}: {totals.get(st, 0)}"
    per_store = {r["id"]: r["cells"] for r in as_admin.execute_script(TABLE_JS, "files")}
    for sid, st, n in db.execute("SELECT store_id::text, processing_status, count(*) FROM transaction_files GROUP BY 1, 2"):
        assert int(per_store[sid][st]) == n
    errors = as_admin.execute_script(TABLE_JS, "errors")
    expected = db.execute("""SELECT f.id::text, (SELECT metric_value FROM performance_metrics m WHERE m.metric_name = 'rows_rejected'
                                                   AND m.metadata->>'file_id' = f.id::text)
                               FROM transaction_files f WHERE error_message IS NOT NULL""").fetchall()
    assert {e["id"] for e in errors} == {f for f, _ in expected}
    rej = dict(expected)
    for e in errors:
        assert int(e["cells"]["rows_rejected"]) == rej[e["id"]]
        assert any(link.endswith(f"/files/{e['id']}/rejects") for link in e["links"])
    rows = as_admin.execute_script(CHARTS_JS)["rows"]
    loaded = db.execute("""SELECT sum(metric_value) FROM performance_metrics WHERE metric_name = 'rows_loaded'
                            AND recorded_at >= now() - interval '30 days'""").fetchone()[0]
    assert sum(rows["datasets"][0]["data"]) == loaded


def test_mining_page(as_admin, server, db):
    assert open_page(as_admin, server, "mining", "mining") == []
    jobs = {r["id"]: r["cells"] for r in as_admin.execute_script(TABLE_JS, "jobs")}
    rows = db.execute("""SELECT id::text, engine_path, execution_time_seconds, memory_used_mb, patterns_found, status
                           FROM mining_jobs""").fetchall()
    assert set(jobs) == {r[0] for r in rows}
    for jid, path, secs, mem, pats, status in rows:
        c = jobs[jid]
        assert (c["engine_path"], c["status"], int(c["patterns_found"])) == (path, status, pats)
        assert close(c["execution_time_seconds"], secs, 3) and close(c["memory_used_mb"], mem, 1)
    stores = {r["id"]: r["cells"] for r in as_admin.execute_script(TABLE_JS, "mining-stores")}
    for sid, n, spark, peak in db.execute("""SELECT store_id::text, count(*), count(*) FILTER (WHERE engine_path = 'spark'),
                                                    max(memory_used_mb) FROM mining_jobs GROUP BY 1"""):
        assert (int(stores[sid]["jobs"]), int(stores[sid]["spark_jobs"])) == (n, spark)
        assert close(stores[sid]["peak_memory_mb"], peak, 1)


def test_store_manager_sees_only_their_store(driver, server, ui_world, db):
    login(driver, server, server.token(ui_world, "sm_a"))
    a = str(ui_world.stores["a"])
    for page, table in (("privacy", "budgets"), ("ingestion", "files"), ("mining", "mining-stores")):
        assert open_page(driver, server, page, f"store-manager-{page}") == []
        assert [r["id"] for r in driver.execute_script(TABLE_JS, table)] == [a], page
    jobs = driver.execute_script(TABLE_JS, "jobs")
    n = db.execute("SELECT count(*) FROM mining_jobs WHERE store_id = %s", (a,)).fetchone()[0]
    assert len(jobs) == n and {j["cells"]["store_name"] for j in jobs} == {"t-ui-a"}
    # rounds are not a store manager's (platform permission table): the page says so
    open_page(driver, server, "rounds", "store-manager-rounds-refused")
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-error") == "403"
    assert "may not read rounds" in driver.find_element(By.ID, "error").text
    # another store's data through the JSON endpoints, in the browser with the same cookie
    for path in (f"api/privacy/stores/{ui_world.stores['b']}", f"api/ingestion/files?store_id={ui_world.stores['b']}",
                 f"api/mining/jobs?store_id={ui_world.stores['b']}"):
        driver.get(f"{server.base}/dashboards/{path}")
        body = json.loads(driver.find_element(By.TAG_NAME, "body").text)
        assert "is not yours" in body["detail"], path


@pytest.fixture
def plugins_readable_by_admin_role():
    """Airflow's UI lists plugin views only for roles with "can read on Plugins" (GET /api/v2/plugins):
    ``sync-roles`` (include/access/permissions.py UI_PERMISSIONS, run by ./dev setup) grants it to every
    platform role; checked here on the ``admin`` role the browser logs in with."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as ab:
        role = ab.sm.find_role("admin")
        assert any(p.action.name == "can_read" and p.resource.name == "Plugins" for p in role.permissions), \
            "the admin role cannot read Plugins: run python -m include.access sync-roles"


def test_pages_inside_airflow_ui(as_admin, server, plugins_readable_by_admin_role):
    """The nav view renders the page in an iframe of Airflow's own UI."""
    as_admin.get_log("browser")   # drop what earlier tests left
    as_admin.get(f"{server.base}/plugin/platform-rounds")
    try:
        WebDriverWait(as_admin, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='Rounds']")))
    except Exception:
        as_admin.save_screenshot(str(ARTIFACTS / "airflow-ui-rounds-failed.png"))
        raise AssertionError(f"no Rounds iframe in Airflow's UI; console: {as_admin.get_log('browser')[-8:]}") from None
    as_admin.switch_to.frame(as_admin.find_element(By.CSS_SELECTOR, "iframe[title='Rounds']"))
    WebDriverWait(as_admin, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "body[data-ready='1']")))
    assert as_admin.execute_script(TABLE_JS, "rounds")
    as_admin.switch_to.default_content()
    as_admin.save_screenshot(str(ARTIFACTS / "airflow-ui-rounds.png"))
    dash_errors = [e for e in as_admin.get_log("browser") if e["level"] == "SEVERE" and "/dashboards/" in e["message"]]
    assert dash_errors == []


def test_home_widget(as_admin, server, db, plugins_readable_by_admin_role):
    """The react_apps widget on Airflow's Home page shows the rounds and files of the database."""
    as_admin.get(f"{server.base}/")
    rounds_el = WebDriverWait(as_admin, 90).until(EC.presence_of_element_located(
        (By.CSS_SELECTOR, "[data-testid='platform-widget'] [data-k='rounds']")))
    by_status = dict(db.execute("SELECT status, count(*) FROM federated_rounds GROUP BY 1").fetchall())
    total = sum(by_status.values())
    assert rounds_el.text.startswith(f"{total} rounds: ")
    assert {p.split(" ")[1]: int(p.split(" ")[0]) for p in rounds_el.text.split(": ", 1)[1].split(", ")} == by_status
    files = as_admin.find_element(By.CSS_SELECTOR, "[data-testid='platform-widget'] [data-k='files']").text
    n_failed = db.execute("SELECT count(*) FROM transaction_files WHERE processing_status = 'failed'").fetchone()[0]
    assert f"{n_failed} failed" in files
    as_admin.save_screenshot(str(ARTIFACTS / "airflow-home-widget.png"))


def test_search_box(as_admin, server, db):
    """The Rounds page's search box finds the global patterns of every round (Elasticsearch) and links them."""
    open_page(as_admin, server, "rounds")
    as_admin.find_element(By.ID, "search-q").send_keys("wine")
    as_admin.find_element(By.CSS_SELECTOR, "#search-round option[value='all']").click()
    as_admin.find_element(By.CSS_SELECTOR, "#search button").click()
    WebDriverWait(as_admin, 30).until(EC.presence_of_element_located(
        (By.CSS_SELECTOR, "#search-results[data-ready='1'] [data-k='total']")))
    expected = db.execute("""SELECT count(*) FROM global_patterns g JOIN federated_rounds r ON r.id = g.round_id
                              WHERE r.status = 'completed' AND 'wine' = ANY(g.pattern_items)""").fetchone()[0]
    assert as_admin.find_element(By.CSS_SELECTOR, "#search-results [data-k='total']").text == f"{expected} patterns"
    hits = as_admin.execute_script(TABLE_JS, "search-hits")
    assert hits and all("wine" in h["cells"]["pattern_items"].split(", ") for h in hits)
    assert all(h["links"] == [f"round?id={h['id']}"] for h in hits)
    as_admin.save_screenshot(str(ARTIFACTS / "rounds-search.png"))
    assert [e for e in as_admin.get_log("browser") if e["level"] == "SEVERE"] == []
