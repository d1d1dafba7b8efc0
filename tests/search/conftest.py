"""Fixtures of the search tests: the real Elasticsearch and Redis of the local stack, a random index
namespace and Redis key namespace per test (removed afterwards), and a migrated database per test
(never the shared `platform` database), with helpers that create stores, logs, metrics and rounds."""
from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from include.search.clients import check_es, es_client, redis_client
from include.search.indices import Namespace, apply_templates, delete_namespace


@pytest.fixture(scope="session")
def es():
    client = es_client()
    try:
        check_es(client)
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"Elasticsearch of the local stack is not reachable ({e}); start it with `./dev services up`")
    return client


@pytest.fixture(scope="session")
def redis_conn():
    r = redis_client()
    r.ping()
    return r


@pytest.fixture
def ns(es):
    """A random index namespace with the templates applied; its indices and templates are deleted after."""
    n = Namespace(f"t-{uuid.uuid4().hex[:10]}-")
    apply_templates(es, n.prefix)
    yield n
    delete_namespace(es, n.prefix)


@pytest.fixture
def rns(redis_conn):
    """A random Redis key namespace; its keys are deleted after."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    keys = list(redis_conn.scan_iter(f"{name}:*"))
    if keys:
        redis_conn.delete(*keys)


@pytest.fixture
def fresh_dsn(temporary_database):
    """A migrated database of the test's own (whole-table counts are exact in it); dropped after."""
    with temporary_database("t_search") as dsn:
        yield dsn


@pytest.fixture
def conn(fresh_dsn):
    with psycopg.connect(fresh_dsn) as c:
        yield c


# ------------------------------------------------------------------------------------------ data
def make_store(conn, name: str | None = None, region_id=None) -> uuid.UUID:
    sid = conn.execute("INSERT INTO stores (name, region_id) VALUES (%s, %s) RETURNING id",
                       (name or f"store-{uuid.uuid4().hex[:6]}", region_id)).fetchone()[0]
    conn.commit()
    return sid


ACTIONS = ["file_uploaded", "file_validated", "mining_started", "mining_completed", "login", "config_changed"]


def add_logs(conn, stores: list, n: int, *, start: datetime | None = None, span: timedelta = timedelta(days=20),
             seed: int = 1, description: str | None = None) -> int:
    """n activity_logs rows spread over [start, start + span) (default: ending now) across ``stores``."""
    rnd = random.Random(seed)
    start = start or datetime.now(timezone.utc) - span
    rows = []
    for i in range(n):
        t = start + timedelta(seconds=rnd.uniform(0, span.total_seconds()))
        a = rnd.choice(ACTIONS)
        rows.append((uuid.uuid4(), rnd.choice(stores) if stores else None, a,
                     description or f"{a.replace('_', ' ')} number {i} via pipeline",
                     f"10.0.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}", "platform-test/1.0", t,
                     psycopg.types.json.Jsonb({"n": i, "note": "synthetic"})))
    with conn.cursor() as cur:
        with cur.copy("COPY activity_logs (id, store_id, action_type, action_description, ip_address, user_agent,"
                      " created_at, additional_data) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
    conn.commit()
    return n


def add_metrics(conn, stores: list, n: int, *, seed: int = 2, span: timedelta = timedelta(days=20)) -> int:
    from include.db.metrics import Metric, copy_metrics

    rnd = random.Random(seed)
    now = datetime.now(timezone.utc)
    ms = [Metric("mining", rnd.choice(["duration_seconds", "patterns_found"]), Decimal(str(round(rnd.uniform(0, 100), 3))),
                 store_id=rnd.choice(stores) if stores else None,
                 recorded_at=now - timedelta(seconds=rnd.uniform(0, span.total_seconds())),
                 metadata={"k": i}) for i in range(n)]
    copy_metrics(conn, ms)
    conn.commit()
    return n


def add_round(conn, patterns: list[tuple[list[str], float]], *, status: str = "completed") -> tuple[uuid.UUID, int]:
    """A federated round with ``patterns`` [(items, utility)], in ``status``."""
    from include.db.rounds import GlobalPattern, copy_global_patterns, create_round, set_round_status

    rid, number = create_round(conn)
    set_round_status(conn, rid, "running")
    copy_global_patterns(conn, rid, [
        GlobalPattern(items, Decimal(str(u)), Decimal("0.1"), 3, Decimal("75.0")) for items, u in patterns])
    if status != "running":
        set_round_status(conn, rid, status, participating_clients=4, patterns_aggregated=len(patterns))
    conn.commit()
    return rid, number


def pg_count(conn, table: str) -> int:
    n = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    conn.commit()
    return n


def es_count(es, index: str) -> int:
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    return es.count(index=index, ignore_unavailable=True, allow_no_indices=True)["count"]
