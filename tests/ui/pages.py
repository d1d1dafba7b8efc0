"""What the browser tests of both worlds share: logging in, opening a page, reading its tables and charts,
and the checks "what this page shows equals the database" (generic queries over the whole database)."""
from __future__ import annotations

import math
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


def shot(driver, name: str, *, full: bool = False) -> None:
    """A screenshot in tests/artifacts/ui/; ``full``: the whole page (the window grown to its height)."""
    if not full:
        driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
        return
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], min(max(height + 140, size["height"]), 4000))
    try:
        driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    finally:
        driver.set_window_size(size["width"], size["height"])


def severe(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_page(driver, server, path, name: str | None = None) -> list[dict]:
    """Load a dashboards page, wait until it has rendered; returns the console's SEVERE entries."""
    driver.get_log("browser")
    driver.get(f"{server.base}/dashboards/{path}")
    WebDriverWait(driver, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "body[data-ready='1']")))
    if name:
        shot(driver, name, full=True)
    return severe(driver)


def num(text: str) -> float | None:
    return None if text in ("–", "") else float(text)


def close(shown: str, value, decimals: int) -> bool:
    if value is None:
        return shown == "–"
    return abs(num(shown) - float(value)) <= 0.5 * 10 ** -decimals + 1e-9


# ---------------------------------------------------------------- rounds
def check_rounds_page(driver, db) -> list[tuple]:
    """The rounds table and charts equal federated_rounds (every round fits one page of 50)."""
    shown = {r["id"]: r["cells"] for r in driver.execute_script(TABLE_JS, "rounds")}
    rows = db.execute("""SELECT id::text, round_number, status, participating_clients, duration_seconds, levels,
                                params, patterns_aggregated,
                                (SELECT COALESCE(sum(privacy_epsilon), 0) FROM round_participations p WHERE p.round_id = r.id)
                           FROM federated_rounds r""").fetchall()
    assert rows and set(shown) == {r[0] for r in rows}
    for rid, number, status, parts, dur, levels, params, npat, eps in rows:
        c = shown[rid]
        dropouts = len({d for lv in levels for d in lv["dropped"]})
        assert (c["round_number"], c["status"]) == (str(number), status)
        assert (int(c["participants"]), int(c["dropouts"]), int(c["invited"]), int(c["patterns_aggregated"])) == \
            (parts, dropouts, len(params["store_ids"]), npat)
        assert close(c["duration_seconds"], dur, 1) and close(c["epsilon_spent"], eps, 4)
    charts = driver.execute_script(CHARTS_JS)
    by_status = Counter(r[2] for r in rows)
    assert dict(zip(charts["status"]["labels"], charts["status"]["datasets"][0]["data"])) == by_status
    assert sorted(charts["duration"]["datasets"][0]["data"]) == pytest.approx(sorted(float(r[4]) for r in rows))
    return rows


def check_round_page(driver, db, rid) -> dict:
    """Summary, levels, stores (outcome per invited store) and the top patterns of one round, as in the
    database; the trend chart of its best pattern over the completed rounds. Returns what it read."""
    number, status, levels, params, parts_n = db.execute(
        "SELECT round_number, status, levels, params, participating_clients FROM federated_rounds WHERE id = %s",
        (rid,)).fetchone()
    assert driver.find_element(By.ID, "title").text == f"Round {number}"
    assert driver.find_element(By.CSS_SELECTOR, "#summary [data-k='status']").text == status
    assert int(driver.find_element(By.CSS_SELECTOR, "#summary [data-k='participants']").text) == parts_n
    shown_levels = [r["cells"] for r in driver.execute_script(TABLE_JS, "levels")]
    assert [(int(c["level"]), int(c["survivors"]), int(c["dropped"])) for c in shown_levels] == \
        [(lv["level"], lv["survivors"], len(lv["dropped"])) for lv in levels]
    assert all(close(c["seconds"], lv["seconds"], 3) for c, lv in zip(shown_levels, levels))
    stores = {r["id"]: r["cells"]["outcome"] for r in driver.execute_script(TABLE_JS, "stores")}
    parts = {str(s) for (s,) in db.execute("SELECT store_id FROM round_participations WHERE round_id = %s", (rid,))}
    dropped = {d.removeprefix("store:") for lv in levels for d in lv["dropped"]}
    assert set(stores) == set(params["store_ids"])
    assert {s for s, o in stores.items() if o == "participated"} == parts
    assert {s for s, o in stores.items() if o == "dropped"} == dropped
    top = db.execute("""SELECT pattern_items, aggregated_utility, utility_ci_low, utility_ci_high, confident,
                               client_coverage_percent
                          FROM global_patterns WHERE round_id = %s ORDER BY aggregated_utility DESC, id LIMIT 20""",
                     (rid,)).fetchall()
    chart = driver.execute_script(CHARTS_JS)["patterns"]
    assert chart["labels"] == [", ".join(t[0]) for t in top]
    assert chart["datasets"][0]["data"] == pytest.approx([float(t[1]) for t in top])
    assert [x for iv in chart["datasets"][0]["intervals"] for x in iv] == \
        pytest.approx([float(v) for t in top for v in (t[2], t[3])])
    table = [r["cells"] for r in driver.execute_script(TABLE_JS, "patterns")]
    assert [c["confident"] for c in table] == ["yes" if t[4] else "no" for t in top]
    assert all(close(c["coverage_percent"], t[5], 1) and close(c["utility"], t[1], 2) for c, t in zip(table, top))
    # the trend of the best pattern across the completed rounds
    pts = []
    if top:
        trend = driver.execute_script(CHARTS_JS)["trend"]
        pts = db.execute("""SELECT r.round_number, g.aggregated_utility FROM global_patterns g
                              JOIN federated_rounds r ON r.id = g.round_id
                             WHERE r.status = 'completed' AND g.pattern_items = %s ORDER BY r.round_number""",
                         (sorted(top[0][0]),)).fetchall()
        assert pts and trend["labels"] == [f"#{n}" for n, _ in pts]
        assert trend["datasets"][0]["data"] == pytest.approx([float(u) for _, u in pts])
    return {"number": number, "status": status, "stores": stores, "dropped": dropped, "patterns": top, "trend": pts}


# ---------------------------------------------------------------- privacy
def expected_spent(db) -> dict[str, float | None]:
    """Per store, what its most-charged transaction has paid, recomputed from privacy_budget_ledger: at each
    instant the live (not aborted) charges whose window covers it compose (pure ledgers: ε adds up; zCDP
    ledgers, noise_type gaussian: ρ and δ add up, then ε at the platform δ left after the thresholds' δ);
    the worst instant counts. None: not composable (shown as "–", exhausted)."""
    from include.privacy.mechanisms import rho_to_epsilon
    from include.privacy.settings import load_platform_settings

    delta = load_platform_settings(db).delta
    noise = dict(db.execute("""SELECT DISTINCT ON (store_id) store_id::text, noise_type FROM privacy_configs
                                ORDER BY store_id, updated_at DESC NULLS LAST, created_at DESC NULLS LAST"""))
    charges = defaultdict(list)
    for s, ws, we, acc, rho, eps, dl in db.execute(
            """SELECT store_id::text, window_start, window_end, accounting, rho, epsilon, delta
                 FROM privacy_budget_ledger WHERE status <> 'aborted'"""):
        charges[s].append((ws, we, acc, rho, eps, dl))

    def at(s: str, t) -> float:
        live = [c for c in charges[s] if c[0] <= t < c[1]]
        if noise.get(s, "laplace") == "laplace":
            return math.inf if any(c[2] != "pure" for c in live) else sum(c[4] for c in live)
        rho, dl = sum(c[3] for c in live), sum(c[5] for c in live)
        return math.inf if dl >= delta else (rho_to_epsilon(rho, delta - dl) if rho > 0 else 0.0)

    out = {}
    for s, cs in charges.items():
        worst = max(at(s, c[0]) for c in cs)
        out[s] = worst if math.isfinite(worst) else None
    return out


def check_privacy_page(driver, db, store_ids) -> dict:
    """Per store: ε spent (recomputed from the ledger), lifetime ε, status; the cap; the charts."""
    spent = expected_spent(db)
    lifetime = {str(s): float(e) for s, e in db.execute("SELECT store_id, epsilon FROM privacy_configs")}
    table = {r["id"]: r["cells"] for r in driver.execute_script(TABLE_JS, "budgets")}
    assert set(table) == {str(s) for s in store_ids}
    for sid, c in table.items():
        assert close(c["spent_epsilon"], spent.get(sid, 0.0), 4), (sid, c, spent.get(sid))
        assert close(c["lifetime_epsilon"], lifetime[sid], 4)
        frac = 1.0 if spent.get(sid, 0.0) is None else spent.get(sid, 0.0) / lifetime[sid]
        assert c["status"] == ("exhausted" if frac >= 1 else "warning" if frac >= 0.8 else "ok")
    cap = float(db.execute("""SELECT COALESCE(max(config_value::float8), 0) FROM server_configs
                               WHERE config_key = 'privacy_budget'""").fetchone()[0])
    assert driver.find_element(By.CSS_SELECTOR, "#cap [data-k='global_epsilon']").text == \
        (f"ε {cap:.4f}" if cap else "none")
    charts = driver.execute_script(CHARTS_JS)
    names = dict(db.execute("SELECT name, id::text FROM stores"))
    assert len(charts["budgets"]["datasets"]) == (3 if cap else 2)
    if cap:
        assert charts["budgets"]["datasets"][2]["data"] == [cap] * len(table)   # the cap line
    assert dict(zip(charts["budgets"]["labels"], charts["budgets"]["datasets"][0]["data"])) == \
        pytest.approx({n: spent.get(names[n], 0.0) for n in charts["budgets"]["labels"]})
    # the series of the first store ends at its spend
    first = charts["series"]["datasets"][0]
    sid = names[first["label"].split(":")[0]]
    assert first["data"][-1] == pytest.approx(spent[sid])
    return {"table": table, "spent": spent}


# ---------------------------------------------------------------- ingestion, mining
def check_ingestion_page(driver, db) -> list[dict]:
    """Files per status (totals and per store), the latest errors with rows rejected and the rejects link,
    the rows loaded over 30 days; returns the error rows shown."""
    totals = dict(db.execute("SELECT processing_status, count(*) FROM transaction_files GROUP BY 1").fetchall())
    shown = {e.get_attribute("data-k"): e.text for e in driver.find_elements(By.CSS_SELECTOR, "#totals span")}
    for st in ("pending", "processing", "completed", "failed"):
        assert shown[st] == f"{st}: {totals.get(st, 0)}"
    per_store = {r["id"]: r["cells"] for r in driver.execute_script(TABLE_JS, "files")}
    for sid, st, n in db.execute("SELECT store_id::text, processing_status, count(*) FROM transaction_files GROUP BY 1, 2"):
        assert int(per_store[sid][st]) == n
    errors = driver.execute_script(TABLE_JS, "errors")
    expected = db.execute("""SELECT f.id::text, (SELECT metric_value FROM performance_metrics m WHERE m.metric_name = 'rows_rejected'
                                                   AND m.metadata->>'file_id' = f.id::text), f.processing_status, f.error_message
                               FROM transaction_files f WHERE error_message IS NOT NULL""").fetchall()
    assert {e["id"] for e in errors} == {f for f, *_ in expected}
    by_id = {f: (rej, st, msg) for f, rej, st, msg in expected}
    for e in errors:
        rej, st, msg = by_id[e["id"]]
        assert int(e["cells"]["rows_rejected"]) == rej and e["cells"]["processing_status"] == st
        assert e["cells"]["error_message"] == msg
        assert any(link.endswith(f"/files/{e['id']}/rejects") for link in e["links"]) == (rej > 0)
    rows = driver.execute_script(CHARTS_JS)["rows"]
    loaded, rejected = db.execute(
        """SELECT sum(metric_value) FILTER (WHERE metric_name = 'rows_loaded'),
                  sum(metric_value) FILTER (WHERE metric_name = 'rows_rejected')
             FROM performance_metrics WHERE metric_type = 'ingestion' AND recorded_at >= now() - interval '30 days'""").fetchone()
    assert sum(rows["datasets"][0]["data"]) == loaded and sum(rows["datasets"][1]["data"]) == rejected
    return errors


def check_mining_page(driver, db) -> dict:
    jobs = {r["id"]: r["cells"] for r in driver.execute_script(TABLE_JS, "jobs")}
    rows = db.execute("""SELECT id::text, engine_path, execution_time_seconds, memory_used_mb, patterns_found, status
                           FROM mining_jobs""").fetchall()
    assert rows and set(jobs) == {r[0] for r in rows}
    for jid, path, secs, mem, pats, status in rows:
        c = jobs[jid]
        assert (c["engine_path"], c["status"], int(c["patterns_found"])) == (path, status, pats)
        assert close(c["execution_time_seconds"], secs, 3) and close(c["memory_used_mb"], mem, 1)
    stores = {r["id"]: r["cells"] for r in driver.execute_script(TABLE_JS, "mining-stores")}
    for sid, n, spark, peak in db.execute("""SELECT store_id::text, count(*), count(*) FILTER (WHERE engine_path = 'spark'),
                                                    max(memory_used_mb) FROM mining_jobs GROUP BY 1"""):
        assert (int(stores[sid]["jobs"]), int(stores[sid]["spark_jobs"])) == (n, spark)
        assert close(stores[sid]["peak_memory_mb"], peak, 1)
    charts = driver.execute_script(CHARTS_JS)
    shown = sorted(x for x in charts["time"]["datasets"][0]["data"] if x is not None)   # every job fits one page
    assert shown == pytest.approx(sorted(float(r[2]) for r in rows if r[2] is not None))
    return jobs
