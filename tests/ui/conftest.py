"""Fixtures of the dashboard tests.

Two worlds, each a migrated database of its own served by a REAL ``airflow api-server`` (FAB auth manager)
with the dashboards and platform API plugins:

* ``pipeline_world`` (session; test_api.py, test_pages.py): the data of a **real pipeline run**:
  ``scripts/main_job.py`` (what ``./dev main`` runs) on a temporary database with a sample of its own
  (3 stores of one region, 300 transactions each, one malformed file, 2 federated rounds): the real DAGs
  through ``airflow dags test`` (ingest, mine, privatize, federate with store agents, index_search). Its DAG
  runs are in Airflow's metadata database, so the DAG and DAG-run tabs can be opened in Airflow's UI;
  they are deleted at the end.
* ``seeded_world`` (module; test_seeded.py only): rows written by include/dashboards/seed.py, for what a
  short real run cannot show: a store near budget exhaustion, a global cap, a round with a dropout, a
  second region.

Users of the three roles (include.access.accounts) are mirrored into Airflow's FAB tables; headless Debian
Chromium via Selenium. Removed at the end: the databases, the API login role, the Redis keys, the
Elasticsearch indices, the FAB users, the DAG runs. Screenshots stay in tests/artifacts/ui/ (git-ignored).
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests

from tests import tlsmode
from tests.apiserver import api_server, free_port
from tests.tlsmode import pg_conn_json

ROOT = Path(__file__).resolve().parents[2]
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
PASSWORD = "dashboards are fun to test"
ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"
# the real run: small enough for a fixture, big enough for global patterns in every round
PIPELINE_ARGS = ["--stores", "3", "--transactions", "300", "--rounds", "2"]
RUN_LINE = re.compile(r"\[main\] (?P<dag>\w+): success in \d+s run_id=(?P<run>\S+)")


@dataclass
class World:
    """Stores by key (real run: a, b, c = sample stores 1, 2, 3 of region ``r1``; seeded: a, c, d in ``r1``,
    b in ``r2``). Users: sm_a, sm_b (store managers of a and b), coord_r1 (coordinator of r1), admin."""
    kind: str
    dsn: str
    r1: uuid.UUID
    r2: uuid.UUID | None = None
    redis_ns: str = ""
    search_prefix: str = ""
    stores: dict[str, uuid.UUID] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    rounds: list[uuid.UUID] = field(default_factory=list)       # by round number
    dag_runs: dict[str, list[str]] = field(default_factory=dict)  # real run: DAG id -> run ids
    seconds: float = 0.0                                          # real run: how long main_job took
    logs: list[Path] = field(default_factory=list)                # real run: main_job's output and its logs


def _add_users(c: psycopg.Connection, w: World) -> None:
    from include.access import accounts
    from include.security.crypto import Keyring

    kr = Keyring.from_connection()
    tag = uuid.uuid4().hex[:6]
    for name, role, kw in (("sm_a", "store_manager", {"store_id": w.stores["a"]}),
                           ("sm_b", "store_manager", {"store_id": w.stores["b"]}),
                           ("coord_r1", "regional_coordinator", {"region_id": w.r1}),
                           ("admin", "admin", {})):
        w.emails[name] = f"{name}-{tag}@t-ui.example"
        w.users[name] = accounts.add_user(c, kr, w.emails[name], PASSWORD, role, **kw)


def _delete_dag_runs(runs: dict[str, list[str]]) -> None:
    """The DAG runs the real run created in Airflow's metadata database (with their task instances)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as s:
        for dag_id, run_ids in runs.items():
            for dr in s.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id.in_(run_ids))):
                s.delete(dr)


@pytest.fixture(scope="session")
def pipeline_world(temporary_database, redis_namespace, tmp_path_factory):
    """The real pipeline run (scripts/main_job.py) on a temporary database; see the module's doc."""
    from include.search.clients import es_client
    from include.search.indices import delete_namespace

    sample = f"t-ui-{uuid.uuid4().hex[:8]}"
    prefix = f"{sample}-"
    with temporary_database("t_ui") as dsn:
        w = World("pipeline", dsn, uuid.uuid4(), redis_ns=redis_namespace("t-ui"), search_prefix=prefix)
        env = {**os.environ, "AIRFLOW_CONN_PLATFORM_POSTGRES": pg_conn_json(dsn),
               "PLATFORM_REDIS_NAMESPACE": w.redis_ns, "PLATFORM_SEARCH_INDEX_PREFIX": prefix}
        log = tmp_path_factory.mktemp("ui-main") / "main_job.log"
        t0 = time.monotonic()
        try:
            with log.open("w") as fh:
                rc = subprocess.run([sys.executable, str(ROOT / "scripts" / "main_job.py"), "--sample", sample,
                                     *PIPELINE_ARGS], env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                    timeout=1200).returncode
            w.seconds = time.monotonic() - t0
            w.logs = [log, *sorted((ROOT / ".local" / "logs" / f"main-{sample}").glob("*.log"))]
            out = log.read_text()
            for m in RUN_LINE.finditer(out):
                w.dag_runs.setdefault(m["dag"], []).append(m["run"])
            assert rc == 0, f"main_job failed (exit {rc}), see {log} and .local/logs/main-{sample}/:\n{out[-4000:]}"
            print(f"\n[tests/ui] real pipeline run (main_job {' '.join(PIPELINE_ARGS)}): {w.seconds:.0f} s", flush=True)
            with psycopg.connect(dsn) as c:
                for (sid, name, region), key in zip(c.execute(
                        "SELECT id, name, region_id FROM stores ORDER BY name").fetchall(), "abc"):
                    w.stores[key], w.names[key], w.r1 = sid, name, region
                assert len(w.stores) == 3, w.stores
                w.rounds = [r for (r,) in c.execute("SELECT id FROM federated_rounds ORDER BY round_number")]
                _add_users(c, w)
                c.commit()
            yield w
        finally:
            _delete_dag_runs(w.dag_runs)
            delete_namespace(es_client(), prefix)


@pytest.fixture(scope="module")
def seeded_world(temporary_database, redis_namespace):
    """Seeded rows (include/dashboards/seed.py): 4 stores in two regions, 7 rounds with a dropout and a
    failed round, store c near exhaustion, a global cap of 3; the patterns shipped to Elasticsearch
    under a random prefix (as the index_search DAG ships them)."""
    from include.access import accounts
    from include.dashboards.seed import seed
    from include.search.clients import es_client
    from include.search.indices import Namespace, apply_templates, delete_namespace
    from include.search.ship import ship_global_patterns

    with temporary_database("t_uiseed") as dsn:
        w = World("seeded", dsn, uuid.uuid4(), uuid.uuid4(), redis_ns=redis_namespace("t-uiseed"),
                  search_prefix=f"t-uiseed-{uuid.uuid4().hex[:8]}-")
        with psycopg.connect(dsn) as c:
            for name, region in (("a", w.r1), ("b", w.r2), ("c", w.r1), ("d", w.r1)):
                w.names[name] = f"t-ui-{name}"
                w.stores[name] = accounts.add_store(c, w.names[name], region_id=region)
            _add_users(c, w)
            # store c has a small lifetime budget: its page shows the exhaustion warning
            w.rounds = seed(c, {w.r1: [w.stores["a"], w.stores["c"], w.stores["d"]], w.r2: [w.stores["b"]]}, rounds=7,
                            lifetime_epsilon={w.stores["c"]: 1.2}).rounds
            c.execute("UPDATE server_configs SET config_value = '3' WHERE config_key = 'privacy_budget'")  # the global cap
            c.commit()
        es = es_client()
        apply_templates(es, w.search_prefix)
        try:
            with psycopg.connect(dsn) as c:
                ship_global_patterns(c, es, ns=Namespace(w.search_prefix))
                c.commit()
            es.indices.refresh(index=f"{w.search_prefix}*")
            yield w
        finally:
            delete_namespace(es, w.search_prefix)


@contextmanager
def _fab_users(world: World):
    from include.access import airflow_sync

    airflow_sync.sync_roles()
    with psycopg.connect(world.dsn) as c:
        airflow_sync.sync_users(airflow_sync.platform_users(c))
    try:
        yield
    finally:
        airflow_sync.delete_users(list(world.users.values()))


@dataclass
class Server:
    base: str
    log: Path
    world: World
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, world: World, who: str) -> str:
        assert world is self.world, "a token of another world's server"
        if who not in self.tokens:
            r = requests.post(f"{self.base}/platform/v1/auth/token",
                              json={"email": world.emails[who], "password": PASSWORD}, timeout=60,
                              verify=tlsmode.http_verify())
            assert r.status_code == 201, (who, r.status_code, r.text)
            self.tokens[who] = r.json()["access_token"]
        return self.tokens[who]

    def get(self, path: str, token: str | None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(f"{self.base}{path}", headers=headers, timeout=120, verify=tlsmode.http_verify())


@contextmanager
def _server(world: World, login_role: tuple[str, str], log_dir: Path):
    """One real ``airflow api-server`` (FAB) on a free port, on the world's database."""
    port = free_port()
    env = {**os.environ,
           "AIRFLOW__CORE__AUTH_MANAGER": FAB,
           "AIRFLOW_CONN_PLATFORM_POSTGRES": pg_conn_json(world.dsn),
           "AIRFLOW_CONN_PLATFORM_API_POSTGRES": pg_conn_json(world.dsn, login=login_role[0], password=login_role[1]),
           "PLATFORM_REDIS_NAMESPACE": world.redis_ns, "PLATFORM_SEARCH_INDEX_PREFIX": world.search_prefix,
           "AIRFLOW__FAB__CACHE_TTL": "1"}  # the JWT key is the stack's (its _CMD option, docs/access.md)
    log = log_dir / "api-server.log"
    with _fab_users(world), api_server(env, port, log) as base:
        yield Server(base, log, world)


@pytest.fixture(scope="session")
def server(pipeline_world, api_login_role, tmp_path_factory):
    with _server(pipeline_world, api_login_role, tmp_path_factory.mktemp("ui-api")) as s:
        yield s


@pytest.fixture(scope="module")
def seeded_server(seeded_world, api_login_role, tmp_path_factory):
    with _server(seeded_world, api_login_role, tmp_path_factory.mktemp("ui-api-seeded")) as s:
        yield s


def server_spki_sha256() -> str:
    """base64 SHA-256 of the api-server certificate's SubjectPublicKeyInfo (TLS mode)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    cert = x509.load_pem_x509_certificate(Path(os.environ["AIRFLOW__API__SSL_CERT"]).read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


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
    if tlsmode.tls_on():
        # TLS mode (docs/tls.md): the api-server's certificate is issued by the project CA, which Chromium does
        # not know. Rather than --ignore-certificate-errors (any certificate, any host), trust exactly the key
        # of this stack's server certificate: Chromium accepts a chain only when one of its public keys has
        # one of these SPKI hashes (the flag needs a --user-data-dir, which chromedriver always passes). No NSS
        # database, no extra package, and a different key (another server, a forged certificate) still fails.
        opts.add_argument(f"--ignore-certificate-errors-spki-list={server_spki_sha256()}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.set_page_load_timeout(120)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield d
    d.quit()


@pytest.fixture
def db(pipeline_world):
    with psycopg.connect(pipeline_world.dsn) as c:
        yield c


@pytest.fixture
def seeded_db(seeded_world):
    with psycopg.connect(seeded_world.dsn) as c:
        yield c
