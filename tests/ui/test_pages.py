"""The dashboard pages in headless Chromium against the real api-server, on the data of a REAL pipeline run
(``pipeline_world``: scripts/main_job.py through the real DAGs): each page loads with no console error and
the numbers in its tables and charts equal the database's; a store manager sees only their store and is
refused the others'; the pages render inside Airflow's UI (nav view, Home widget, the Rounds tab of the
``federated_round`` DAG and the Round tab of the run that opened a round). Screenshots go to
tests/artifacts/ui/. What only seeded data shows is in test_seeded.py."""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.ui.pages import (CHARTS_JS, TABLE_JS, check_ingestion_page, check_mining_page, check_privacy_page,
                            check_round_page, check_rounds_page, login, open_page, severe, shot)


@pytest.fixture
def as_admin(driver, server, pipeline_world):
    login(driver, server, server.token(pipeline_world, "admin"))
    return driver


def test_the_real_run_fed_every_page(db, pipeline_world):
    """The world is a real run: files loaded and one rejected, jobs, ledger charges, two completed rounds with
    patterns, every DAG of the workflow run once (twice for federated_round)."""
    assert dict(db.execute("SELECT processing_status, count(*) FROM transaction_files GROUP BY 1").fetchall()) == \
        {"completed": 3, "failed": 1}
    assert db.execute("SELECT count(DISTINCT store_id) FROM transactions").fetchone()[0] == 3
    assert db.execute("SELECT count(*) FROM mining_jobs WHERE status = 'completed'").fetchone()[0] == 3
    # privatize_store_patterns charged each store's ledger once (its release), each round once more
    assert db.execute("""SELECT count(*) FILTER (WHERE round_id IS NULL AND release_name LIKE 'contribution@%%'),
                                count(DISTINCT round_id) FROM privacy_budget_ledger
                          GROUP BY store_id""").fetchall() == [(1, 2)] * 3
    rounds = db.execute("""SELECT round_number, status, patterns_aggregated, dag_run_id FROM federated_rounds
                            ORDER BY round_number""").fetchall()
    assert [(n, s) for n, s, _, _ in rounds] == [(1, "completed"), (2, "completed")]
    assert all(p > 0 for _, _, p, _ in rounds)
    assert [r for *_, r in rounds] == pipeline_world.dag_runs["federated_round"]
    assert set(pipeline_world.dag_runs) == {"ingest_transaction_files", "mine_store_patterns",
                                            "privatize_store_patterns", "federated_round", "index_search"}


def test_rounds_page(as_admin, server, db):
    assert open_page(as_admin, server, "rounds", "rounds") == []
    check_rounds_page(as_admin, db)


def test_round_page(as_admin, server, db, pipeline_world):
    rid = pipeline_world.rounds[-1]
    assert open_page(as_admin, server, f"round?id={rid}", "round") == []
    seen = check_round_page(as_admin, db, rid)
    assert set(seen["stores"].values()) == {"participated"} and seen["patterns"]


def test_privacy_page(as_admin, server, db, pipeline_world):
    assert open_page(as_admin, server, "privacy", "privacy") == []
    seen = check_privacy_page(as_admin, db, pipeline_world.stores.values())
    # every store paid for its local release and the two rounds
    assert all(seen["spent"][str(s)] > 0 for s in pipeline_world.stores.values())
    assert {c["releases"] for c in seen["table"].values()} == {"3"}


def test_ingestion_page(as_admin, server, db, pipeline_world):
    assert open_page(as_admin, server, "ingestion", "ingestion") == []
    errors = check_ingestion_page(as_admin, db)
    # the malformed sample file: failed, its rejects downloadable through the link (the platform API, real S3)
    (bad,) = errors
    assert bad["cells"]["processing_status"] == "failed" and bad["cells"]["store_name"] == pipeline_world.names["a"]
    assert "transactions rejected" in bad["cells"]["error_message"]
    # the link as the browser resolves it, fetched with the page's own cookie (a CSV is a download, not a page)
    status, ctype, text = as_admin.execute_async_script(
        """const done = arguments[1]; fetch(document.querySelector(`#errors tr[data-id='${arguments[0]}'] a`).href)
             .then(async r => done([r.status, r.headers.get('content-type'), await r.text()]));""", bad["id"])
    assert status == 200 and ctype.startswith("text/csv")
    lines = text.strip().splitlines()
    assert lines[0] == "line,transaction_id,field,message" and len(lines) - 1 == int(bad["cells"]["rows_rejected"])
    assert all(",quantity," in ln for ln in lines[1:])


def test_mining_page(as_admin, server, db):
    assert open_page(as_admin, server, "mining", "mining") == []
    jobs = check_mining_page(as_admin, db)
    assert len(jobs) == 3 and {j["engine_path"] for j in jobs.values()} == {"local"}


def test_store_manager_sees_only_their_store(driver, server, pipeline_world, db):
    w = pipeline_world
    login(driver, server, server.token(w, "sm_a"))
    a, b = str(w.stores["a"]), str(w.stores["b"])
    for page, table in (("privacy", "budgets"), ("ingestion", "files"), ("mining", "mining-stores")):
        assert open_page(driver, server, page, f"store-manager-{page}") == []
        assert [r["id"] for r in driver.execute_script(TABLE_JS, table)] == [a], page
    jobs = driver.execute_script(TABLE_JS, "jobs")
    n = db.execute("SELECT count(*) FROM mining_jobs WHERE store_id = %s", (a,)).fetchone()[0]
    assert len(jobs) == n == 1 and {j["cells"]["store_name"] for j in jobs} == {w.names["a"]}
    # rounds are not a store manager's (platform permission table): the page says so
    open_page(driver, server, "rounds", "store-manager-rounds-refused")
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-error") == "403"
    assert "may not read rounds" in driver.find_element(By.ID, "error").text
    open_page(driver, server, f"round?id={w.rounds[0]}")
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-error") == "403"
    # another store's data through the JSON endpoints, in the browser with the same cookie
    for path in (f"api/privacy/stores/{b}", f"api/ingestion/files?store_id={b}", f"api/mining/jobs?store_id={b}",
                 f"api/ingestion/errors?store_id={b}"):
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


def _iframe(driver, title: str, failure_shot: str):
    """Wait for the plugin's iframe in Airflow's UI, switch into it and wait until its page has rendered."""
    try:
        frame = WebDriverWait(driver, 90).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, f"iframe[title='{title}']")))
    except Exception:
        shot(driver, failure_shot)
        raise AssertionError(f"no {title} iframe in Airflow's UI at {driver.current_url}; "
                             f"console: {driver.get_log('browser')[-8:]}") from None
    driver.switch_to.frame(frame)
    WebDriverWait(driver, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "body[data-ready='1']")))


def assert_console_clean(driver) -> None:
    """No console error at all: neither from the dashboards nor from Airflow's own panels around them (the
    admin reads the DAG and DAG-run pages: include/access/permissions.py AIRFLOW_PERMISSIONS)."""
    assert severe(driver) == []


def test_pages_inside_airflow_ui(as_admin, server, db, plugins_readable_by_admin_role):
    """The nav view renders the page in an iframe of Airflow's own UI."""
    as_admin.get_log("browser")   # drop what earlier tests left
    as_admin.get(f"{server.base}/plugin/platform-rounds")
    _iframe(as_admin, "Rounds", "airflow-ui-rounds-failed")
    shown = {r["cells"]["round_number"] for r in as_admin.execute_script(TABLE_JS, "rounds")}
    assert shown == {str(n) for (n,) in db.execute("SELECT round_number FROM federated_rounds")}
    as_admin.switch_to.default_content()
    shot(as_admin, "airflow-ui-rounds")
    assert_console_clean(as_admin)


def _open_tab(driver, url: str, route: str, failure_shot: str):
    """Open a page of Airflow's UI and click the plugin tab whose link ends with ``plugin/<route>``."""
    driver.get(url)
    try:
        tab = WebDriverWait(driver, 90).until(EC.element_to_be_clickable(
            (By.CSS_SELECTOR, f"a[href$='/plugin/{route}']")))
    except Exception:
        shot(driver, failure_shot)
        raise AssertionError(f"no tab linking to plugin/{route} at {url}; console: {driver.get_log('browser')[-8:]}") \
            from None
    tab.click()
    WebDriverWait(driver, 30).until(EC.url_contains(f"/plugin/{route}"))
    return tab.text


def test_dag_tab_shows_the_rounds_of_federated_round(as_admin, server, db, pipeline_world,
                                                     plugins_readable_by_admin_role):
    """Airflow's own page of the federated_round DAG has the plugin's "Rounds" tab (destination dag); in its
    iframe, the rounds the real run's DAG runs opened, with their number and status from the database."""
    as_admin.get_log("browser")
    label = _open_tab(as_admin, f"{server.base}/dags/federated_round", "platform-dag-rounds", "airflow-dag-tab-failed")
    assert label == "Rounds"
    _iframe(as_admin, "Rounds", "airflow-dag-tab-failed")
    shown = {r["id"]: r["cells"] for r in as_admin.execute_script(TABLE_JS, "rounds")}
    for rid, number, status, run_id in db.execute(
            "SELECT id::text, round_number, status, dag_run_id FROM federated_rounds ORDER BY round_number"):
        assert run_id in pipeline_world.dag_runs["federated_round"]
        assert (shown[rid]["round_number"], shown[rid]["status"]) == (str(number), status)
    assert len(shown) == len(pipeline_world.dag_runs["federated_round"])
    as_admin.switch_to.default_content()
    shot(as_admin, "airflow-dag-rounds-tab")
    assert_console_clean(as_admin)
    # another DAG's Rounds tab says that it runs no rounds
    _open_tab(as_admin, f"{server.base}/dags/mine_store_patterns", "platform-dag-rounds", "airflow-dag-tab-failed")
    _iframe(as_admin, "Rounds", "airflow-dag-tab-failed")
    assert as_admin.find_element(By.ID, "main").text == "DAG mine_store_patterns runs no federated rounds."
    as_admin.switch_to.default_content()
    assert_console_clean(as_admin)


def test_dag_run_tab_shows_that_runs_round(as_admin, server, db, pipeline_world, plugins_readable_by_admin_role):
    """The page of each federated_round DAG run of the real run has the "Round" tab (destination dag_run);
    its iframe shows the round that run opened (number, status, participants from the database). A DAG run
    that opened no round says so."""
    as_admin.get_log("browser")
    for i, run_id in enumerate(pipeline_world.dag_runs["federated_round"]):
        rid, number, status = db.execute("SELECT id, round_number, status FROM federated_rounds WHERE dag_run_id = %s",
                                         (run_id,)).fetchone()
        url = f"{server.base}/dags/federated_round/runs/{quote(run_id, safe='')}"
        assert _open_tab(as_admin, url, "platform-run-round", "airflow-dag-run-tab-failed") == "Round"
        _iframe(as_admin, "Round", "airflow-dag-run-tab-failed")
        assert as_admin.find_element(By.ID, "title").text == f"Round {number}"
        seen = check_round_page(as_admin, db, rid)
        assert seen["status"] == status == "completed"
        as_admin.switch_to.default_content()
        if i == len(pipeline_world.dag_runs["federated_round"]) - 1:
            shot(as_admin, "airflow-dag-run-round-tab")
    assert_console_clean(as_admin)
    (mine_run,) = pipeline_world.dag_runs["mine_store_patterns"]
    _open_tab(as_admin, f"{server.base}/dags/mine_store_patterns/runs/{quote(mine_run, safe='')}", "platform-run-round",
              "airflow-dag-run-tab-failed")
    _iframe(as_admin, "Round", "airflow-dag-run-tab-failed")
    assert as_admin.find_element(By.ID, "main").text == "This DAG run has no federated round."
    as_admin.switch_to.default_content()
    assert_console_clean(as_admin)


def test_home_widget(as_admin, server, db, plugins_readable_by_admin_role):
    """The react_apps widget on Airflow's Home page shows the rounds, files and jobs of the database."""
    as_admin.get_log("browser")
    as_admin.get(f"{server.base}/")
    rounds_el = WebDriverWait(as_admin, 90).until(EC.presence_of_element_located(
        (By.CSS_SELECTOR, "[data-testid='platform-widget'] [data-k='rounds']")))
    by_status = dict(db.execute("SELECT status, count(*) FROM federated_rounds GROUP BY 1").fetchall())
    total = sum(by_status.values())
    assert rounds_el.text.startswith(f"{total} rounds: ")
    assert {p.split(" ")[1]: int(p.split(" ")[0]) for p in rounds_el.text.split(": ", 1)[1].split(", ")} == by_status
    files = as_admin.find_element(By.CSS_SELECTOR, "[data-testid='platform-widget'] [data-k='files']").text
    for st, n in db.execute("SELECT processing_status, count(*) FROM transaction_files GROUP BY 1"):
        assert f"{n} {st}" in files
    jobs = db.execute("SELECT count(*) FROM mining_jobs").fetchone()[0]
    assert as_admin.find_element(By.CSS_SELECTOR, "[data-testid='platform-widget'] [data-k='mining']").text == \
        f"{jobs} mining jobs"
    shot(as_admin, "airflow-home-widget")
    assert_console_clean(as_admin)


def _common_word(db) -> str:
    """The word that occurs in the items of the most global patterns of completed rounds."""
    return db.execute(
        """SELECT w FROM global_patterns g JOIN federated_rounds r ON r.id = g.round_id,
                  LATERAL (SELECT DISTINCT w FROM unnest(g.pattern_items) i,
                           regexp_split_to_table(lower(i), '[^a-z0-9]+') w WHERE w ~ '^[a-z]{3,}$') t
            WHERE r.status = 'completed' GROUP BY w ORDER BY count(*) DESC, w LIMIT 1""").fetchone()[0]


def test_search_box(as_admin, server, db):
    """The Rounds page's search box finds the global patterns of every round (shipped to Elasticsearch by the
    real run's index_search DAG) and links them to their rounds."""
    word = _common_word(db)
    open_page(as_admin, server, "rounds")
    as_admin.find_element(By.ID, "search-q").send_keys(word)
    as_admin.find_element(By.CSS_SELECTOR, "#search-round option[value='all']").click()
    as_admin.find_element(By.CSS_SELECTOR, "#search button").click()
    WebDriverWait(as_admin, 30).until(EC.presence_of_element_located(
        (By.CSS_SELECTOR, "#search-results[data-ready='1'] [data-k='total']")))
    expected = db.execute("""SELECT count(*) FROM global_patterns g JOIN federated_rounds r ON r.id = g.round_id
                              WHERE r.status = 'completed' AND EXISTS (SELECT 1 FROM unnest(g.pattern_items) i
                                    WHERE %s = ANY(regexp_split_to_array(lower(i), '[^a-z0-9]+')))""",
                          (word,)).fetchone()[0]
    assert expected > 0
    assert as_admin.find_element(By.CSS_SELECTOR, "#search-results [data-k='total']").text == f"{expected} patterns"
    hits = as_admin.execute_script(TABLE_JS, "search-hits")
    assert hits and all(any(word in item.lower().split() for item in h["cells"]["pattern_items"].split(", "))
                        for h in hits)
    rounds = {str(r): n for r, n in db.execute("SELECT id, round_number FROM federated_rounds")}
    assert all(h["links"] == [f"round?id={h['id']}"] and h["cells"]["round_number"] == f"#{rounds[h['id']]}"
               for h in hits)
    shot(as_admin, "rounds-search")
    assert severe(as_admin) == []


def test_charts_are_the_tables(as_admin, server, db):
    """The rounds page's duration chart lists the rounds oldest first, as in the table (newest first)."""
    open_page(as_admin, server, "rounds")
    charts = as_admin.execute_script(CHARTS_JS)
    numbers = [n for (n,) in db.execute("SELECT round_number FROM federated_rounds ORDER BY round_number")]
    assert charts["duration"]["labels"] == [f"#{n}" for n in numbers]


def _self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 with a key of its own, signed by nobody Chromium trusts."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t-ui impostor")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    crt, pem = tmp_path / "impostor.crt", tmp_path / "impostor.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return str(crt), str(pem)


def test_browser_trusts_the_stack_server_only(driver, server, tmp_path):
    """The browser reaches the api-server in the stack's mode (https in TLS mode, its certificate trusted by the
    pinned key), but no blanket exception: an https server on the same address with another key is refused."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests import tlsmode
    from tests.apiserver import free_port

    assert server.base.startswith("https://" if tlsmode.tls_on() else "http://")

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"impostor page")

        def log_message(self, *a):
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*_self_signed(tmp_path))
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Hello)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        driver.get(f"https://127.0.0.1:{httpd.server_address[1]}/")
        source = driver.page_source
        assert "impostor page" not in source and "ERR_CERT_AUTHORITY_INVALID" in source
    finally:
        httpd.shutdown()
        httpd.server_close()
