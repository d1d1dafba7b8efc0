"""Fixtures of the access tests: a migrated database of their own, a random login role for the API, a
random Redis namespace, platform users mirrored into Airflow's FAB tables, and the REAL
``airflow api-server`` (FAB auth manager) serving the platform plugin, started once per session.

Left behind by nothing: the database, login role, Redis keys, FAB users, S3 objects of the test stores
and the DAG runs the API created are all removed at the end."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests

from tests import tlsmode
from tests.apiserver import api_server, free_port


ROOT = Path(__file__).resolve().parents[2]
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
PASSWORD = "correct horse battery staple"


def pg_conn_json(dsn: str, **over) -> str:
    return tlsmode.pg_conn_json(dsn, **over)  # TLS mode: sslmode/sslrootcert in the extra (docs/tls.md)


@dataclass
class World:
    """Stores, users and rows the tests act on. Region r1 holds stores a and c, region r2 store b."""
    dsn: str
    r1: uuid.UUID
    r2: uuid.UUID
    stores: dict[str, uuid.UUID] = field(default_factory=dict)
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    files: dict[str, uuid.UUID] = field(default_factory=dict)
    rounds: dict[str, uuid.UUID] = field(default_factory=dict)


@pytest.fixture(scope="session")
def access_dsn(temporary_database):
    with temporary_database("t_access") as dsn:
        yield dsn


@pytest.fixture(scope="session")
def redis_ns(redis_namespace):
    return redis_namespace("t-access")


@pytest.fixture(scope="session")
def world(access_dsn, s3, bucket):
    from include.access import accounts
    from include.db.privacy import upsert_privacy_config
    from include.security.crypto import Keyring

    kr = Keyring.from_connection()
    w = World(access_dsn, uuid.uuid4(), uuid.uuid4())
    with psycopg.connect(access_dsn) as c:
        for name, region in (("a", w.r1), ("b", w.r2), ("c", w.r1)):
            w.stores[name] = accounts.add_store(c, f"t-access-{name}", region_id=region)
            upsert_privacy_config(c, w.stores[name], epsilon=1.0)
        for name, role, kw in (("sm_a", "store_manager", {"store_id": w.stores["a"]}),
                               ("sm_b", "store_manager", {"store_id": w.stores["b"]}),
                               ("coord_r1", "regional_coordinator", {"region_id": w.r1}),
                               ("coord_r2", "regional_coordinator", {"region_id": w.r2}),
                               ("admin", "admin", {})):
            w.emails[name] = f"{name}-{uuid.uuid4().hex[:6]}@t-access.example"
            w.users[name] = accounts.add_user(c, kr, w.emails[name], PASSWORD, role, **kw)
        for name in ("a", "b"):
            sid = w.stores[name]
            fid = uuid.uuid4()
            key = f"processed/{sid}/{fid}_day1.csv"
            c.execute("""INSERT INTO transaction_files (id, store_id, filename, file_size, file_type, s3_bucket, s3_key,
                                                        processing_status, error_message)
                         VALUES (%s, %s, 'day1.csv', 10, 'csv', %s, %s, 'completed', NULL)""", (fid, sid, bucket, key))
            w.files[name] = fid
            s3.put_object(Bucket=bucket, Key=f"rejected/{sid}/{fid}_day1.csv.csv", Body=b"line,reason\n3,bad qty\n")
        for i, (name, region) in enumerate((("r1", w.r1), ("r2", w.r2))):
            w.rounds[name] = c.execute(
                """INSERT INTO federated_rounds (round_number, status, region_id) VALUES (%s, 'completed', %s)
                   RETURNING id""", (i + 1, region)).fetchone()[0]
            c.execute("""INSERT INTO global_patterns (round_id, pattern_items, aggregated_utility, global_support,
                                                      contributing_stores, client_coverage_percent)
                         VALUES (%s, ARRAY['wine','cheese'], 50, 0.1, 2, 100)""", (w.rounds[name],))
        c.commit()
    yield w
    for sid in w.stores.values():
        for prefix in (f"incoming/{sid}/", f"rejected/{sid}/", f"failed/{sid}/", f"processed/{sid}/"):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for o in page.get("Contents", []):
                    s3.delete_object(Bucket=bucket, Key=o["Key"])


@pytest.fixture(scope="session")
def s3(s3_settings):
    import boto3

    return boto3.client("s3", **s3_settings)


@pytest.fixture(scope="session")
def fab_users(world):
    """The FAB roles (idempotent, shared Airflow database) and one FAB user per platform user."""
    from include.access import airflow_sync

    airflow_sync.sync_roles()
    with psycopg.connect(world.dsn) as c:
        airflow_sync.sync_users(airflow_sync.platform_users(c))
    yield
    with psycopg.connect(world.dsn) as c:
        ids = [u.user_id for u in airflow_sync.platform_users(c)]
    airflow_sync.delete_users(ids)
    _delete_dag_runs([str(i) for i in ids])


def _delete_dag_runs(usernames: list[str]) -> None:
    """The runs the API created for these users (queued, never run: the DAGs are paused)."""
    dsn = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as c:
        c.execute("DELETE FROM dag_run WHERE triggering_user_name = ANY(%s) AND run_id LIKE 'platform_api__%%'",
                  (usernames,))


@dataclass
class Api:
    base: str
    env: dict
    jwt_secret: str
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base}/platform/v1{path}"

    def login(self, email: str, password: str = PASSWORD) -> requests.Response:
        return requests.post(self.url("/auth/token"), json={"email": email, "password": password}, timeout=60,
                             verify=tlsmode.http_verify())

    def token(self, world: World, who: str) -> str:
        if who not in self.tokens:
            r = self.login(world.emails[who])
            assert r.status_code == 201, (who, r.status_code, r.text)
            self.tokens[who] = r.json()["access_token"]
        return self.tokens[who]

    def call(self, method: str, path: str, token: str | None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kw.setdefault("verify", tlsmode.http_verify())
        return requests.request(method, self.url(path), headers=headers, timeout=120, **kw)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "include.access", *args], env=self.env, cwd=ROOT,
                              input=stdin, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def api(world, fab_users, api_login_role, redis_ns, tmp_path_factory):
    port = free_port()
    # the stack's JWT signing key, read the way Airflow reads it (its _CMD option: .local/secrets, docs/access.md)
    secret = subprocess.run(shlex.split(os.environ["AIRFLOW__API_AUTH__JWT_SECRET_CMD"]), capture_output=True,
                            text=True, check=True).stdout
    env = {**os.environ,
           "AIRFLOW__CORE__AUTH_MANAGER": FAB,
           "AIRFLOW_CONN_PLATFORM_POSTGRES": pg_conn_json(world.dsn),
           "AIRFLOW_CONN_PLATFORM_API_POSTGRES": pg_conn_json(world.dsn, login=api_login_role[0],
                                                              password=api_login_role[1]),
           "PLATFORM_REDIS_NAMESPACE": redis_ns,
           **tlsmode.api_server_env(port),  # https in TLS mode (docs/tls.md)
           # FAB caches a token's user (roles) for cache_ttl s (default 30): role changes show at once here
           "AIRFLOW__FAB__CACHE_TTL": "1"}
    log = tmp_path_factory.mktemp("api") / "api-server.log"
    with api_server(env, port, log) as base:
        yield Api(base, env, secret, log)


@pytest.fixture(scope="session")
def cli(access_dsn, redis_ns):
    """Run ``python -m include.access ...`` on the test database: (returncode, parsed stdout, stderr)."""
    env = {**os.environ, "AIRFLOW_CONN_PLATFORM_POSTGRES": pg_conn_json(access_dsn), "PLATFORM_REDIS_NAMESPACE": redis_ns,
           "AIRFLOW__CORE__AUTH_MANAGER": FAB}

    def run(*args: str, stdin: str | None = None):
        p = subprocess.run([sys.executable, "-m", "include.access", *args], env=env, cwd=ROOT, input=stdin,
                           capture_output=True, text=True, timeout=300)
        return p.returncode, json.loads(p.stdout) if p.returncode == 0 else None, p.stderr

    return run


@pytest.fixture
def db(world):
    with psycopg.connect(world.dsn) as c:
        yield c
