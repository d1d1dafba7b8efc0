"""Fixtures of the ingestion tests: a migrated temporary database in the real cluster (never the
shared `platform` database), the moto S3 server's bucket, one great-expectations validator, and
a random Redis namespace for the live progress every ingestion publishes (keys removed after)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest


H = "transaction_id,transaction_date,item,quantity,unit_utility\n"


def schema_and_ingest_sql(target: Path) -> Path:
    """The migrations ingestion depends on: the schema's (0001-0099) and its own (0100-0199);
    other areas' files are left out so that their work in progress cannot break these tests."""
    import shutil

    from include.db.migrate import SQL_DIR

    for f in sorted(Path(SQL_DIR).glob("0[01][0-9][0-9]_*.sql")):
        shutil.copy(f, target / f.name)
    return target


@pytest.fixture(scope="session")
def ingest_dsn(tmp_path_factory, temporary_database):
    """libpq URI of a fresh database with all migrations applied (dropped at the end)."""
    with temporary_database("t_ingest", sql_dir=schema_and_ingest_sql(tmp_path_factory.mktemp("sql"))) as dsn:
        yield dsn


@pytest.fixture
def conn(ingest_dsn):
    with psycopg.connect(ingest_dsn) as c:
        yield c


@pytest.fixture(scope="session")
def redis_conn():
    from include.search.clients import redis_client

    r = redis_client()
    r.ping()
    return r


@pytest.fixture(scope="session", autouse=True)
def redis_ns(redis_conn):
    """The live progress of these tests goes to a namespace of their own (PLATFORM_REDIS_NAMESPACE,
    read by include.search.live.LiveFeed), never to the platform's."""
    name = f"t-ingest-{uuid.uuid4().hex[:10]}"
    old = os.environ.get("PLATFORM_REDIS_NAMESPACE")
    os.environ["PLATFORM_REDIS_NAMESPACE"] = name
    yield name
    if old is None:
        os.environ.pop("PLATFORM_REDIS_NAMESPACE", None)
    else:
        os.environ["PLATFORM_REDIS_NAMESPACE"] = old
    keys = list(redis_conn.scan_iter(f"{name}:*"))
    if keys:
        redis_conn.delete(*keys)


@pytest.fixture(scope="session")
def s3(s3_settings, bucket):
    import boto3

    client = boto3.client("s3", **s3_settings)
    try:
        client.head_bucket(Bucket=bucket)
    except Exception:
        client.create_bucket(Bucket=bucket)
    return client


@pytest.fixture(scope="session")
def validator():
    from include.ingest.validate import ContractValidator

    return ContractValidator()


@pytest.fixture
def store(conn) -> str:
    """A new active store (random UUID: tests do not see each other's rows or objects)."""
    sid = conn.execute("INSERT INTO stores (name) VALUES (%s) RETURNING id",
                       (f"test store {uuid.uuid4().hex[:6]}",)).fetchone()[0]
    conn.commit()
    return str(sid)


@pytest.fixture
def put(tmp_path: Path, conn, s3, bucket, store):
    """put(name, content, store=None) -> Uploaded: writes the file and uploads it (pending)."""
    from include.ingest.upload import upload_files

    used = {store}

    def _put(name: str, content, store_id: str | None = None, file_type: str | None = None):
        p = tmp_path / name
        if p.exists():
            p = tmp_path / f"{uuid.uuid4().hex[:6]}_{name}"
        p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        used.add(store_id or store)
        (u,) = upload_files(conn, s3, store_id or store, [p], bucket=bucket, file_type=file_type)
        return u

    yield _put
    # leave nothing in incoming/ (the bucket is shared with the platform's own DAG runs)
    for sid in used:
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"incoming/{sid}/").get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=o["Key"])
