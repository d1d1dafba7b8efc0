"""Fixtures of the privacy tests: a temporary, fully migrated database in the real PostgreSQL cluster
(never the shared `platform` database), stores with random UUIDs, login roles for the RLS checks."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql


PRIVACY_TARGET = 399   # every migration up to the privacy range


def _dsn_for(base: str, **overrides) -> str:
    return psycopg.conninfo.make_conninfo(base, **overrides)


@pytest.fixture(scope="session")
def privacy_dsn(pg_dsn, temporary_database):
    with temporary_database("t_privacy", target=PRIVACY_TARGET) as dsn:
        yield dsn


@pytest.fixture
def conn(privacy_dsn):
    with psycopg.connect(privacy_dsn) as c:
        yield c


@pytest.fixture(scope="session")
def login_roles(pg_dsn, privacy_dsn):
    """app role -> DSN of a random LOGIN role that is a member of it (dropped at the end)."""
    tag = uuid.uuid4().hex[:8]
    dsns, names = {}, []
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        for app_role in ("store_manager", "regional_coordinator", "privacy_key_holder"):
            name, password = f"t_priv_{app_role}_{tag}", uuid.uuid4().hex
            c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                sql.Identifier(name), sql.Literal(password), sql.Identifier(f"app_{app_role}")))
            names.append(name)
            dsns[app_role] = _dsn_for(privacy_dsn, user=name, password=password)
    yield dsns
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        for name in names:
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)


class StoreFactory:
    def __init__(self, dsn: str):
        self.dsn = dsn

    def create(self, *, epsilon=1.0, noise_type="laplace", hash_patterns=False, region_id=None) -> str:
        sid = str(uuid.uuid4())
        with psycopg.connect(self.dsn) as c:
            c.execute("INSERT INTO stores (id, name, region_id) VALUES (%s, %s, %s)",
                      (sid, f"store-{sid[:8]}", region_id))
            c.execute("INSERT INTO privacy_configs (store_id, epsilon, noise_type, hash_patterns) "
                      "VALUES (%s, %s, %s, %s)", (sid, Decimal(str(epsilon)), noise_type, hash_patterns))
        return sid

    def add_transactions(self, store_id: str, baskets, start: datetime = T0, step=timedelta(minutes=7)):
        """baskets: list of [(item, quantity, unit_utility), ...]."""
        rows = []
        for n, b in enumerate(baskets):
            items = [x[0] for x in b]
            qs = [Decimal(str(x[1])) for x in b]
            us = [Decimal(str(x[2])) for x in b]
            rows.append((store_id, items, qs, us, sum(q * u for q, u in zip(qs, us)), start + n * step))
        with psycopg.connect(self.dsn) as c, c.cursor() as cur:
            cur.executemany("INSERT INTO transactions (store_id, items, quantities, unit_utilities, total_utility, "
                            "transaction_date) VALUES (%s, %s, %s, %s, %s, %s)", rows)

    def add_mining_job(self, store_id: str, patterns, max_pattern_length=3) -> tuple[str, dict]:
        """patterns: list of item lists; returns (job id, {sorted items: pattern id})."""
        with psycopg.connect(self.dsn) as c:
            job = c.execute("INSERT INTO mining_jobs (store_id, status, min_utility, min_support, max_pattern_length) "
                            "VALUES (%s, 'completed', 1, 0, %s) RETURNING id", (store_id, max_pattern_length)).fetchone()[0]
            ids = {}
            for p in patterns:
                pid = c.execute("INSERT INTO local_patterns (mining_job_id, store_id, pattern_items, utility, support, "
                                "confidence, pattern_length) VALUES (%s, %s, %s, 1, 1, 1, %s) RETURNING id",
                                (job, store_id, list(p), len(p))).fetchone()[0]
                ids[tuple(sorted(p))] = str(pid)
        return str(job), ids

    def add_round(self) -> str:
        with psycopg.connect(self.dsn) as c:
            n = c.execute("SELECT COALESCE(max(round_number), 0) + 1 FROM federated_rounds").fetchone()[0]
            return str(c.execute("INSERT INTO federated_rounds (round_number, status) VALUES (%s, 'running') "
                                 "RETURNING id", (n,)).fetchone()[0])


@pytest.fixture
def stores(privacy_dsn) -> StoreFactory:
    return StoreFactory(privacy_dsn)
