"""Fixtures of the dashboard tests: a migrated database of their own with seeded rounds, files, jobs
and ledger charges; platform users mirrored into Airflow's FAB tables; the REAL ``airflow api-server``
(FAB auth manager) serving the dashboards and platform API plugins; headless Debian Chromium via Selenium.

Removed at the end: the database, the API login role, the Redis keys, the FAB users. Screenshots stay
in tests/artifacts/ui/ (git-ignored)."""
from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg import sql

from tests.apiserver import api_server, free_port
from tests.tlsmode import pg_conn_json

ROOT = Path(__file__).resolve().parents[2]
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
PASSWORD = "dashboards are fun to test"
ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"


@dataclass
class World:
    """Region r1 holds stores a, c and d, region r2 store b. Users: sm_a, sm_b, coord_r1, admin."""
    dsn: str
    r1: uuid.UUID
    r2: uuid.UUID
    stores: dict[str, uuid.UUID] = field(default_factory=dict)
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    rounds: list[uuid.UUID] = field(default_factory=list)


@pytest.fixture(scope="session")
def ui_world(temporary_database):
    from include.access import accounts
    from include.dashboards.seed import seed
    from include.security.crypto import Keyring

    kr = Keyring.from_connection()
    with temporary_database("t_ui") as dsn:
        w = World(dsn, uuid.uuid4(), uuid.uuid4())
        with psycopg.connect(dsn) as c:
            for name, region in (("a", w.r1), ("b", w.r2), ("c", w.r1), ("d", w.r1)):
                w.stores[name] = accounts.add_store(c, f"t-ui-{name}", region_id=region)
            for name, role, kw in (("sm_a", "store_manager", {"store_id": w.stores["a"]}),
                                   ("sm_b", "store_manager", {"store_id": w.stores["b"]}),
                                   ("coord_r1", "regional_coordinator", {"region_id": w.r1}),
                                   ("admin", "admin", {})):
                w.emails[name] = f"{name}-{uuid.uuid4().hex[:6]}@t-ui.example"
                w.users[name] = accounts.add_user(c, kr, w.emails[name], PASSWORD, role, **kw)
            # store c has a small lifetime budget: its page shows the exhaustion warning
            w.rounds = seed(c, {w.r1: [w.stores["a"], w.stores["c"], w.stores["d"]], w.r2: [w.stores["b"]]}, rounds=7,
                            lifetime_epsilon={w.stores["c"]: 1.2}).rounds
            c.execute("UPDATE server_configs SET config_value = '3' WHERE config_key = 'privacy_budget'")  # the global cap
            c.commit()
        yield w


@pytest.fixture(scope="session")
def ui_login_role(pg_dsn):
    """A random NOINHERIT login role acting only through SET ROLE app_<role> (like platform_api_postgres)."""
    from include.db.session import ensure_login_role

    name, password = f"t_uiapi_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(24)
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        ensure_login_role(c, name, password, ["store_manager", "regional_coordinator", "admin"])
    yield name, password
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def ui_redis_ns(redis_namespace):
    return redis_namespace("t-ui")


@pytest.fixture(scope="session")
def search_prefix(ui_world):
    """The test database's global patterns indexed in Elasticsearch under a random prefix (as the
    index_search DAG ships them); the indices and templates are removed at the end."""
    from include.search.clients import es_client
    from include.search.indices import Namespace, apply_templates, delete_namespace
    from include.search.ship import ship_global_patterns

    prefix = f"t-ui-{uuid.uuid4().hex[:8]}-"
    es = es_client()
    apply_templates(es, prefix)
    try:
        with psycopg.connect(ui_world.dsn) as c:
            ship_global_patterns(c, es, ns=Namespace(prefix))
            c.commit()
        es.indices.refresh(index=f"{prefix}*")
        yield prefix
    finally:
        delete_namespace(es, prefix)


@pytest.fixture(scope="session")
def ui_fab_users(ui_world):
    from include.access import airflow_sync

    airflow_sync.sync_roles()
    with psycopg.connect(ui_world.dsn) as c:
        airflow_sync.sync_users(airflow_sync.platform_users(c))
    yield
    airflow_sync.delete_users(list(ui_world.users.values()))


@dataclass
class Server:
    base: str
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, world: World, who: str) -> str:
        if who not in self.tokens:
            r = requests.post(f"{self.base}/platform/v1/auth/token",
                              json={"email": world.emails[who], "password": PASSWORD}, timeout=60)
            assert r.status_code == 201, (who, r.status_code, r.text)
            self.tokens[who] = r.json()["access_token"]
        return self.tokens[who]

    def get(self, path: str, token: str | None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(f"{self.base}{path}", headers=headers, timeout=120)


@pytest.fixture(scope="session")
def server(ui_world, ui_fab_users, ui_login_role, ui_redis_ns, search_prefix, tmp_path_factory):
    """One real ``airflow api-server`` (FAB) on a free port, on the test database."""
    port = free_port()
    env = {**os.environ,
           "AIRFLOW__CORE__AUTH_MANAGER": FAB,
           "AIRFLOW_CONN_PLATFORM_POSTGRES": pg_conn_json(ui_world.dsn),
           "AIRFLOW_CONN_PLATFORM_API_POSTGRES": pg_conn_json(ui_world.dsn, login=ui_login_role[0],
                                                              password=ui_login_role[1]),
           "PLATFORM_REDIS_NAMESPACE": ui_redis_ns, "PLATFORM_SEARCH_INDEX_PREFIX": search_prefix,
           "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
           "AIRFLOW__FAB__CACHE_TTL": "1"}
    log = tmp_path_factory.mktemp("ui-api") / "api-server.log"
    with api_server(env, port, log) as base:
        yield Server(base, log)


@pytest.fixture(scope="session")
def driver():
    """Headless Debian Chromium driven by Debian's chromedriver (no Selenium Manager download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1400,1000"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.set_page_load_timeout(120)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield d
    d.quit()


@pytest.fixture
def db(ui_world):
    with psycopg.connect(ui_world.dsn) as c:
        yield c
