"""Shared fixtures: connection settings of the real local services (scripts/services.sh).

`./dev test` sources .local/env.sh before pytest; running pytest directly works too: the settings
are loaded from that file here. A service that is down is a setup error, reported as such.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# PLATFORM_STATE_DIR: a second stack's state (scripts/lib.sh, docs/tls.md)
ENV_FILE = Path(os.environ.get("PLATFORM_STATE_DIR") or ROOT / ".local") / "env.sh"


def _load_env_file() -> None:
    if os.environ.get("AIRFLOW_CONN_PLATFORM_POSTGRES"):
        return
    if not ENV_FILE.exists():
        raise pytest.UsageError(f"{ENV_FILE} is missing: start the services with `./dev services up` "
                                "or run the tests with `./dev test`")
    out = subprocess.run(["bash", "-c", f"set -a; source {shlex.quote(str(ENV_FILE))}; env -0"],
                         check=True, capture_output=True).stdout
    for entry in out.split(b"\0"):
        if b"=" in entry:
            k, v = entry.decode().split("=", 1)
            os.environ.setdefault(k, v)


_load_env_file()
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """libpq URI of the platform database as its owner role `platform`."""
    import psycopg

    from include.connections import postgres_dsn

    dsn = postgres_dsn()
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL is not reachable ({e}); start it with `./dev services up`")
    return dsn


@pytest.fixture(scope="session")
def api_login_role(pg_dsn) -> tuple[str, str]:
    """(name, password) of a random NOINHERIT login role acting only through SET ROLE app_<role>, like the
    platform API's ``platform_api_postgres``; dropped at the end of the session."""
    import secrets

    import psycopg
    from psycopg import sql

    from include.db.session import ensure_login_role

    name, password = f"t_api_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(24)
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        ensure_login_role(c, name, password, ["store_manager", "regional_coordinator", "admin"])
    yield name, password
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def s3_settings() -> dict:
    from include.connections import S3, get_connection

    c = get_connection(S3)
    return {"endpoint_url": c.extra["endpoint_url"], "region_name": c.extra.get("region_name", "us-east-1"),
            "aws_access_key_id": c.login, "aws_secret_access_key": c.password,
            # TLS mode (docs/tls.md): the project CA bundle; None = botocore's default trust
            "verify": c.extra.get("verify")}


@pytest.fixture(scope="session")
def bucket() -> str:
    return os.environ["AIRFLOW_VAR_PLATFORM_BUCKET"]


def drop_database(base_dsn: str, name: str, attempts: int = 5) -> None:
    """DROP DATABASE ... WITH (FORCE), retried while another role still holds a connection."""
    import psycopg
    from psycopg import sql

    for i in range(attempts):
        try:
            with psycopg.connect(base_dsn, autocommit=True) as c:
                c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            return
        except psycopg.errors.InsufficientPrivilege as e:
            if i == attempts - 1:
                warnings.warn(f"temporary database {name} left behind: {e}")
                return
            time.sleep(2)


@contextmanager
def _temporary_database(prefix: str, *, sql_dir: Path | None = None, target: int | None = None):
    import psycopg
    from psycopg import sql

    from include.connections import postgres_dsn
    from include.db.migrate import migrate

    base = postgres_dsn()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(base, dbname=name)
    try:
        kwargs = {"sql_dir": sql_dir} if sql_dir is not None else {}
        if target is not None:
            kwargs["target"] = target
        migrate(dsn, **kwargs)
        yield dsn
    finally:
        drop_database(base, name)


@pytest.fixture(scope="session")
def redis_namespace():
    """Factory: ``redis_namespace("t-area")`` gives a random Redis namespace (key prefix) of the test's own;
    every key under the namespaces it gave is deleted at the end of the session."""
    from include.search.clients import redis_client

    given: list[str] = []

    def make(prefix: str) -> str:
        given.append(f"{prefix}-{uuid.uuid4().hex[:10]}")
        return given[-1]

    yield make
    if given:
        r = redis_client()
        for ns in given:
            keys = list(r.scan_iter(f"{ns}:*"))
            if keys:
                r.delete(*keys)


@pytest.fixture(scope="session")
def temporary_database():
    """Context manager factory: ``with temporary_database("t_area", sql_dir=..., target=...) as dsn``
    gives a fresh database of the test's own with the migrations applied (all of them, those of
    ``sql_dir``, or up to ``target``), dropped on exit. Tests that count whole tables use one."""
    return _temporary_database
