"""Dashboards benchmark (issue 13): are the pages usable with 1,000 rounds and 200 stores?
(The round timed is the second newest, a completed one with its 20 patterns.)

In a temporary database: 200 stores in 10 regions, 1,000 rounds (about 20 invited stores each, 20 global
patterns each, the participants' ledger charges: ~20,000 rows), 10 files and 5 mining jobs per store
(include/dashboards/seed.py). Then, in one run:

1. queries: each include/dashboards function as an admin (all stores), a coordinator (one region) and a
   store manager (one store), p50/p95 of ``--repeat`` calls; next to the peer, the same list
   unpaged (every row at once, as a client-side table would need), with the ratio;
2. endpoints: the JSON endpoints through a real ``airflow api-server`` (FAB, the platform's JWT, RLS,
   audit), p50/p95;
3. pages: each page in headless Chromium until it has rendered (``body[data-ready]``), p50/p95.

    .venv/bin/python bench/dashboards.py [--rounds 1000] [--stores 200] [--repeat 20] [--no-http]

Everything is removed at the end (database, login role, FAB users, Redis keys).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

PASSWORD = "benchmark dashboards pw"
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


def load_env() -> None:
    if os.environ.get("AIRFLOW_CONN_PLATFORM_POSTGRES"):
        return
    out = subprocess.run(["bash", "-c", f"set -a; source {ROOT / '.local/env.sh'}; env -0"], check=True,
                         capture_output=True).stdout
    for entry in out.split(b"\0"):
        if b"=" in entry:
            k, v = entry.decode().split("=", 1)
            os.environ.setdefault(k, v)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def timed(fn, repeat: int) -> tuple[float, float]:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return pct(ts, 50) * 1000, pct(ts, 95) * 1000


def row(name: str, p50: float, p95: float, extra: str = "") -> None:
    print(f"  {name:<46} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms  {extra}")


def build(dsn: str, n_stores: int, n_rounds: int, regions: int):
    from include.access import accounts
    from include.dashboards.seed import seed
    from include.security.crypto import Keyring

    kr = Keyring.from_connection()
    region_ids = [uuid.uuid4() for _ in range(regions)]
    by_region: dict = {r: [] for r in region_ids}
    t0 = time.perf_counter()
    with psycopg.connect(dsn) as c:
        for i in range(n_stores):
            r = region_ids[i % regions]
            by_region[r].append(c.execute("INSERT INTO stores (name, region_id) VALUES (%s, %s) RETURNING id",
                                          (f"bench store {i:03d}", r)).fetchone()[0])
        emails = {k: f"{k}-{uuid.uuid4().hex[:6]}@bench.example" for k in ("admin", "coord", "sm")}
        users = {"admin": accounts.add_user(c, kr, emails["admin"], PASSWORD, "admin"),
                 "coord": accounts.add_user(c, kr, emails["coord"], PASSWORD, "regional_coordinator",
                                            region_id=region_ids[0]),
                 "sm": accounts.add_user(c, kr, emails["sm"], PASSWORD, "store_manager",
                                         store_id=by_region[region_ids[0]][0])}
        s = seed(c, by_region, rounds=n_rounds, files_per_store=10, jobs_per_store=5, patterns_per_round=20)
        c.commit()
        c.execute("ANALYZE")
    print(f"seeded {n_stores} stores, {len(s.rounds)} rounds, {s.ledger_rows} ledger rows, {s.files} files, "
          f"{s.jobs} jobs in {time.perf_counter() - t0:.1f} s")
    return region_ids, by_region, users, emails, s


def bench_queries(dsn: str, region_ids, by_region, s, repeat: int) -> None:
    from include.dashboards import Scope, ingestion, mining, privacy, rounds

    scopes = {"admin": Scope(), "coordinator": Scope(region_id=region_ids[0]),
              "store manager": Scope(store_id=by_region[region_ids[0]][0])}
    store0 = by_region[region_ids[0]][0]
    with psycopg.connect(dsn) as c:
        print("\n1. queries (include/dashboards, owner connection)")
        for who, sc in scopes.items():
            print(f" {who}")
            cases = {
                "rounds list (page of 50)": lambda: rounds.list_rounds(c, sc, limit=50),
                "round page (last round) + top 20 patterns": lambda: (
                    rounds.get_round(c, Scope(), s.rounds[-2]), rounds.round_patterns(c, Scope(), s.rounds[-2], limit=20)),
                "pattern trend (cheese, wine)": lambda: rounds.pattern_trend(c, sc, ["cheese", "wine"]),
                "privacy budgets (page of 50 stores)": lambda: privacy.list_budgets(c, sc, limit=50),
                "privacy series (one store)": lambda: privacy.budget_series(c, sc, store0),
                "ingestion files per status (50 stores)": lambda: ingestion.files_by_status(c, sc, limit=50),
                "ingestion rows over 30 days": lambda: ingestion.rows_over_time(c, sc),
                "ingestion latest errors (20)": lambda: ingestion.latest_errors(c, sc, limit=20),
                "mining per store (50 stores)": lambda: mining.store_summary(c, sc, limit=50),
                "mining jobs (page of 50)": lambda: mining.list_jobs(c, sc, limit=50),
            }
            for name, fn in cases.items():
                row(name, *timed(fn, repeat))
        print(" peer: the same lists unpaged (every row in one answer), admin")
        for name, paged, full in (
                ("rounds", lambda: rounds.list_rounds(c, Scope(), limit=50),
                 lambda: [rounds.list_rounds(c, Scope(), limit=500, offset=o) for o in range(0, len(s.rounds), 500)]),
                ("privacy budgets", lambda: privacy.list_budgets(c, Scope(), limit=50),
                 lambda: privacy.list_budgets(c, Scope(), limit=500)),
                ("mining jobs", lambda: mining.list_jobs(c, Scope(), limit=50),
                 lambda: [mining.list_jobs(c, Scope(), limit=500, offset=o) for o in range(0, 5 * 200, 500)])):
            a, b = timed(paged, repeat), timed(full, max(3, repeat // 4))
            row(f"{name}: paged / unpaged", a[0], b[0], f"ratio paged/unpaged {a[0] / b[0]:.2f}")


def start_server(dsn: str, login_role: tuple[str, str], ns: str, log: Path):
    from tests.ui.conftest import free_port, pg_conn_json  # the tests' helpers

    port = free_port()
    env = {**os.environ, "AIRFLOW__CORE__AUTH_MANAGER": FAB, "AIRFLOW_CONN_PLATFORM_POSTGRES": pg_conn_json(dsn),
           "AIRFLOW_CONN_PLATFORM_API_POSTGRES": pg_conn_json(dsn, login=login_role[0], password=login_role[1]),
           "PLATFORM_REDIS_NAMESPACE": ns, "AIRFLOW__API__PORT": str(port),
           "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
           "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48), "AIRFLOW__FAB__CACHE_TTL": "1"}
    fh = open(log, "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "api-server", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)
    import requests

    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        try:
            if requests.get(f"{base}/api/v2/monitor/health", timeout=5).ok:
                return proc, base
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"api-server did not start, see {log}")
        time.sleep(1)


def bench_http(base: str, tokens: dict, s, by_region, region_ids, repeat: int) -> None:
    import requests

    store0 = by_region[region_ids[0]][0]
    print("\n2. JSON endpoints through the api-server (JWT, permission, RLS, audit row)")
    for who, paths in (("admin", ["api/rounds?limit=50", f"api/rounds/{s.rounds[-2]}",
                                  f"api/rounds/{s.rounds[-2]}/patterns?limit=20", "api/privacy?limit=50",
                                  f"api/privacy/stores/{store0}", "api/ingestion/files?limit=50",
                                  "api/ingestion/rows", "api/ingestion/errors?limit=20", "api/mining/stores?limit=50",
                                  "api/mining/jobs?limit=50"]),
                       ("coord", ["api/rounds?limit=50", "api/privacy?limit=50"]),
                       ("sm", ["api/privacy", "api/ingestion/files", "api/mining/jobs"])):
        h = {"Authorization": f"Bearer {tokens[who]}"}
        for p in paths:
            r = requests.get(f"{base}/dashboards/{p}", headers=h, timeout=120)
            assert r.ok, (who, p, r.status_code, r.text[:300])
            row(f"{who}: {p.split('?')[0][:38]}", *timed(lambda: requests.get(f"{base}/dashboards/{p}", headers=h,
                                                                          timeout=120), repeat),
                f"{len(r.content) / 1024:.0f} KiB")


def bench_pages(base: str, token: str, s, repeat: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        d.get(f"{base}/dashboards/static/style.css")
        d.add_cookie({"name": "_token", "value": token, "path": "/"})
        print("\n3. pages in headless Chromium (admin): driver.get until body[data-ready] (client side)")
        for page in ("rounds", f"round?id={s.rounds[-2]}", "privacy", "ingestion", "mining"):
            in_page: list[float] = []

            def load():
                d.get(f"{base}/dashboards/{page}")
                WebDriverWait(d, 120, poll_frequency=0.02).until(
                    EC.presence_of_element_located((By.CSS_SELECTOR, "body[data-ready='1']")))
                body = d.find_element(By.TAG_NAME, "body")
                assert not body.get_attribute("data-error"), (page, body.get_attribute("data-error"))
                in_page.append(float(body.get_attribute("data-rendered-ms")))
            p50, p95 = timed(load, max(3, repeat // 2))
            row(page.split("?")[0], p50, p95, f"in page (navigation start to rendered): p50 {pct(in_page, 50):.0f} ms")
    finally:
        d.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--stores", type=int, default=200)
    ap.add_argument("--regions", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-http", action="store_true", help="queries only (no api-server, no browser)")
    args = ap.parse_args()
    load_env()
    from include.connections import postgres_dsn
    from include.db.migrate import migrate
    from include.db.session import ensure_login_role

    base_dsn = postgres_dsn()
    name = f"bench_dash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(base_dsn, dbname=name)
    login = (f"bench_uiapi_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24))
    ns = f"bench-ui-{uuid.uuid4().hex[:8]}"
    proc, users = None, {}
    try:
        migrate(dsn)
        region_ids, by_region, users, emails, s = build(dsn, args.stores, args.rounds, args.regions)
        bench_queries(dsn, region_ids, by_region, s, args.repeat)
        if not args.no_http:
            import requests

            from include.access import airflow_sync

            with psycopg.connect(base_dsn, autocommit=True) as c:
                ensure_login_role(c, *login, ["store_manager", "regional_coordinator", "admin"])
            airflow_sync.sync_roles()
            with psycopg.connect(dsn) as c:
                airflow_sync.sync_users(airflow_sync.platform_users(c))
            log = Path("/tmp") / f"{ns}-api-server.log"
            proc, base = start_server(dsn, login, ns, log)
            tokens = {}
            for k, email in emails.items():
                r = requests.post(f"{base}/platform/v1/auth/token", json={"email": email, "password": PASSWORD}, timeout=60)
                assert r.status_code == 201, r.text
                tokens[k] = r.json()["access_token"]
            bench_http(base, tokens, s, by_region, region_ids, args.repeat)
            bench_pages(base, tokens["admin"], s, args.repeat)
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if users and not args.no_http:
            from include.access import airflow_sync

            airflow_sync.delete_users(list(users.values()))
        with psycopg.connect(base_dsn, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login[0])))
        from include.search.clients import redis_client

        r = redis_client()
        keys = list(r.scan_iter(f"{ns}:*"))
        if keys:
            r.delete(*keys)


if __name__ == "__main__":
    main()
