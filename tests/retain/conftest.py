"""Fixtures of the retention/backup tests: a scratch database per test (every migration applied) and a
scratch bucket per test, dropped afterwards, so that no partition or row of the shared `platform`
database and no object of the shared bucket is touched. Backups run against the project's real cluster
and stanza (the scratch database is part of that cluster)."""
from __future__ import annotations

import uuid

import psycopg
import pytest


@pytest.fixture
def archive_store(s3_settings):
    import boto3

    from include.retain.archive import S3Store

    client = boto3.client("s3", **s3_settings)
    bucket = f"retain-test-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    store = S3Store(client, bucket)
    yield store
    keys = store.list("")
    store.delete(keys)
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def db(pg_dsn):
    """A fresh scratch database per test (every migration applied), dropped afterwards."""
    from urllib.parse import urlsplit, urlunsplit

    from include.db.migrate import migrate

    name = f"retain_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    u = urlsplit(pg_dsn)
    dsn = urlunsplit((u.scheme, u.netloc, f"/{name}", u.query, u.fragment))
    try:
        migrate(dsn)
        yield dsn
    finally:
        from tests.conftest import drop_database

        drop_database(pg_dsn, name)     # retried while another role still holds a connection
