"""Fixtures of the mining-run tests: a temporary database in the real PostgreSQL cluster with the
schema (0001-0099) and the mining migrations (0200-0299) applied (never the shared `platform`
database), stores with transactions, and one local[2] SparkSession for the whole session."""
from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest


SQL_DIR = Path(__file__).resolve().parents[2] / "include" / "sql"


def _areas(name: str) -> bool:
    n = int(name[:4])
    return n < 100 or 200 <= n < 300


@pytest.fixture(scope="session")
def mine_dsn(tmp_path_factory, temporary_database) -> str:
    sql_dir = tmp_path_factory.mktemp("sql")
    for f in sorted(SQL_DIR.glob("*.sql")):
        if _areas(f.name):
            shutil.copy(f, sql_dir / f.name)
    with temporary_database("t_mine", sql_dir=sql_dir) as dsn:
        yield dsn


@pytest.fixture
def conn(mine_dsn):
    with psycopg.connect(mine_dsn) as c:
        yield c


def make_store(dsn: str, rows, *, start: datetime | None = None, name: str = "store") -> uuid.UUID:
    """A new store with ``rows`` ``(items, quantities, unit_utilities)`` as transactions, one minute apart
    from ``start``."""
    from include.db.stores import create_store

    with psycopg.connect(dsn) as c:
        sid = create_store(c, f"{name}-{uuid.uuid4().hex[:8]}")
        add_transactions(c, sid, rows, start=start)
        c.commit()
    return sid


def add_transactions(c, store_id, rows, *, start: datetime | None = None) -> None:
    from include.db.transactions import Transaction, copy_transactions

    start = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
    txs = []
    for k, (items, qs, us) in enumerate(rows):
        qs = [Decimal(str(q)) for q in qs]
        us = [Decimal(str(u)) for u in us]
        txs.append(Transaction(store_id, list(items), qs, us, sum((q * u for q, u in zip(qs, us)), Decimal(0)),
                               transaction_date=start + timedelta(minutes=k)))
    copy_transactions(c, txs)


def synthetic_rows(store_index: int, n: int, seed: int = 11):
    from include.synthetic import store_transactions

    return [(t.items, t.quantities, t.unit_utilities)
            for t in store_transactions(store_index, n, n_items=60, seed=seed)]


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for every Spark test (start-up costs 10-20 s)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from include.mine.spark import get_session

    s = get_session("local[2]", app_name="tests.mine", conf={"spark.default.parallelism": "2"})
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()
