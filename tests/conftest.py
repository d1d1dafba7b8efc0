"""Shared fixtures: connection settings of the real local services (scripts/services.sh).

`./dev test` sources .local/env.sh before pytest; running pytest directly works too: the settings
are loaded from that file here. A service that is down is a setup error, reported as such.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / ".local" / "env.sh"


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
def s3_settings() -> dict:
    from include.connections import S3, get_connection

    c = get_connection(S3)
    return {"endpoint_url": c.extra["endpoint_url"], "region_name": c.extra.get("region_name", "us-east-1"),
            "aws_access_key_id": c.login, "aws_secret_access_key": c.password}


@pytest.fixture(scope="session")
def bucket() -> str:
    return os.environ["AIRFLOW_VAR_PLATFORM_BUCKET"]
