"""Row-level security per application role, connecting as LOGIN roles that are members of
app_store_manager / app_regional_coordinator / app_admin (SET ROLE through include.db.session).

World: region R1 with stores A and B, region R2 with store C; each store has a row in each of the
seven store tables."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg
import pytest

from include.db import mining, privacy, rounds, stores, transactions, users
from include.db.session import AppContext, ContextError, connect

STORE_TABLES = ["transaction_files", "transactions", "mining_jobs", "local_patterns", "privacy_configs",
                "privacy_applications", "round_participations"]
# FORCEd: the owner is held to its session's store too. Not the bulk tables (COPY, migration 0008).
FORCED_TABLES = ["transaction_files", "mining_jobs", "privacy_configs", "round_participations"]


@dataclass
class World:
    r1: uuid.UUID
    r2: uuid.UUID
    a: uuid.UUID
    b: uuid.UUID
    c: uuid.UUID
    manager_a: uuid.UUID
    ids: dict = field(default_factory=dict)   # (table, store) -> row id


def _seed_store(conn, w: World, store: uuid.UUID, round_id: uuid.UUID) -> None:
    f = transactions.register_file(conn, store, "t.csv", 10, "csv", s3_bucket="platform-data", s3_key=f"k/{uuid.uuid4()}")
    transactions.copy_transactions(conn, [transactions.Transaction(store, ["milk", "bread"], [Decimal(1), Decimal(2)],
                                                                   [Decimal("1.5"), Decimal("2")], Decimal("5.5"), file_id=f)])
    job = mining.create_job(conn, store, Decimal(1), Decimal("0.1"))
    pat = mining.Pattern(["milk"], Decimal(3), Decimal("0.5"), Decimal(1))
    mining.copy_local_patterns(conn, job, store, [pat])
    privacy.upsert_privacy_config(conn, store, epsilon=1)
    privacy.copy_privacy_applications(conn, [privacy.PrivacyApplication(store, pat.id, Decimal(3), Decimal("3.2"),
                                                                        Decimal("0.2"), Decimal(1))])
    rounds.add_participation(conn, round_id, store, 1, 1)
    w.ids[("mining_jobs", store)] = job
    w.ids[("local_patterns", store)] = pat.id
    w.ids[("transaction_files", store)] = f


@pytest.fixture(scope="module")
def world(schema_dsn, keyring) -> World:
    with psycopg.connect(schema_dsn) as conn:
        r1, r2 = uuid.uuid4(), uuid.uuid4()
        manager_a = users.create_user(conn, keyring, f"a-{uuid.uuid4().hex[:6]}@example.com", "pw-a", "store_manager")
        a = stores.create_store(conn, "A", region_id=r1, manager_id=manager_a)
        b = stores.create_store(conn, "B", region_id=r1)
        c = stores.create_store(conn, "C", region_id=r2)
        w = World(r1, r2, a, b, c, manager_a)
        round_id, _ = rounds.create_round(conn)
        w.ids["round"] = round_id
        for s in (a, b, c):
            _seed_store(conn, w, s, round_id)
    return w


def _insert_for(conn, table: str, w: World, store: uuid.UUID) -> None:
    """Insert one row of ``table`` for ``store`` (raises what the database raises)."""
    if table == "transaction_files":
        transactions.register_file(conn, store, "x.csv", 1, "csv")
    elif table == "transactions":
        transactions.copy_transactions(conn, [transactions.Transaction(store, ["x"], [Decimal(1)], [Decimal(1)], Decimal(1))])
    elif table == "mining_jobs":
        mining.create_job(conn, store, Decimal(1), Decimal("0.1"))
    elif table == "local_patterns":
        conn.execute("""INSERT INTO local_patterns (mining_job_id, store_id, pattern_items, utility, support, confidence,
                                                    pattern_length) VALUES (%s, %s, '{x}', 1, 1, 1, 1)""",
                     (w.ids[("mining_jobs", store)], store))
    elif table == "privacy_configs":
        conn.execute("INSERT INTO privacy_configs (store_id) VALUES (%s)", (store,))
    elif table == "privacy_applications":
        conn.execute("""INSERT INTO privacy_applications (store_id, pattern_id, original_utility, noisy_utility,
                                                          noise_added, epsilon_used) VALUES (%s, %s, 1, 1, 0, 1)""",
                     (store, w.ids[("local_patterns", store)]))
    elif table == "round_participations":
        conn.execute("""INSERT INTO round_participations (round_id, store_id, patterns_contributed, privacy_epsilon)
                        VALUES (%s, %s, 1, 1)""", (w.ids["round"], store))
    else:
        raise AssertionError(table)


def _count(conn, table, store) -> int:
    return conn.execute(f"SELECT count(*) FROM {table} WHERE store_id = %s", (store,)).fetchone()[0]


@pytest.fixture
def as_store_a(login_roles, world):
    with connect(login_roles.dsns["store_manager"], AppContext.store_manager(world.a, world.manager_a),
                 autocommit=True) as c:
        yield c


@pytest.fixture
def as_coordinator_r1(login_roles, world):
    with connect(login_roles.dsns["regional_coordinator"], AppContext.regional_coordinator(world.r1),
                 autocommit=True) as c:
        yield c


@pytest.fixture
def as_admin(login_roles, world):
    with connect(login_roles.dsns["admin"], AppContext.admin(), autocommit=True) as c:
        yield c


# ----------------------------------------------------------------------------------- store manager
@pytest.mark.parametrize("table", STORE_TABLES)
def test_store_manager_reads_only_its_store(as_store_a, world, table):
    assert _count(as_store_a, table, world.b) == 0
    assert _count(as_store_a, table, world.c) == 0
    assert _count(as_store_a, table, world.a) >= 1
    seen = {r[0] for r in as_store_a.execute(f"SELECT DISTINCT store_id FROM {table}")}
    assert seen == {world.a}


@pytest.mark.parametrize("table", STORE_TABLES)
def test_store_manager_cannot_insert_for_another_store(as_store_a, world, table):
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        _insert_for(as_store_a, table, world, world.b)


def test_store_manager_inserts_for_its_own_store(as_store_a, world):
    before = _count(as_store_a, "transactions", world.a)
    _insert_for(as_store_a, "transactions", world, world.a)
    assert _count(as_store_a, "transactions", world.a) == before + 1


def test_store_manager_cannot_update_delete_or_move_rows_across_stores(as_store_a, world):
    assert as_store_a.execute("UPDATE transactions SET total_utility = 0 WHERE store_id = %s", (world.b,)).rowcount == 0
    assert as_store_a.execute("DELETE FROM transactions WHERE store_id = %s", (world.b,)).rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        as_store_a.execute("UPDATE mining_jobs SET store_id = %s WHERE id = %s", (world.b, world.ids[("mining_jobs", world.a)]))


def test_store_manager_sees_its_store_and_user_row_only(as_store_a, world):
    assert {r[0] for r in as_store_a.execute("SELECT id FROM stores")} == {world.a}
    assert {r[0] for r in as_store_a.execute("SELECT id FROM users")} == {world.manager_a}


def test_no_context_sees_nothing(login_roles, world):
    """A member of app_store_manager that set no store sees no store data (fails closed)."""
    with psycopg.connect(login_roles.dsns["store_manager"], autocommit=True) as c:
        for table in STORE_TABLES:
            assert c.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _insert_for(c, "transactions", world, world.a)


def test_context_requires_membership(schema_dsn, world):
    """The owner login is not a member of the application roles: SET ROLE is refused with a clear message."""
    with pytest.raises(ContextError, match="cannot act as 'app_store_manager'"):
        connect(schema_dsn, AppContext.store_manager(world.a))


# ----------------------------------------------------------------------------------- coordinator
@pytest.mark.parametrize("table", [t for t in STORE_TABLES if t != "privacy_applications"])
def test_coordinator_reads_its_region_only(as_coordinator_r1, world, table):
    assert _count(as_coordinator_r1, table, world.a) >= 1
    assert _count(as_coordinator_r1, table, world.b) >= 1
    assert _count(as_coordinator_r1, table, world.c) == 0


def test_coordinator_never_reads_privacy_applications(as_coordinator_r1):
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        as_coordinator_r1.execute("SELECT count(*) FROM privacy_applications")


@pytest.mark.parametrize("table", ["transaction_files", "transactions", "mining_jobs", "local_patterns", "privacy_configs"])
def test_coordinator_is_read_only_on_raw_data(as_coordinator_r1, world, table):
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        _insert_for(as_coordinator_r1, table, world, world.a)


def test_coordinator_runs_rounds_for_its_region(as_coordinator_r1, world):
    round_id, number = rounds.create_round(as_coordinator_r1)
    assert number >= 1
    rounds.add_participation(as_coordinator_r1, round_id, world.a, 3, "0.5")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        rounds.add_participation(as_coordinator_r1, round_id, world.c, 3, "0.5")
    rounds.set_round_status(as_coordinator_r1, round_id, "running")
    rounds.copy_global_patterns(as_coordinator_r1, round_id, [rounds.GlobalPattern(["milk"], Decimal(5), Decimal(1), 2, Decimal(50))])
    rounds.set_round_status(as_coordinator_r1, round_id, "completed", participating_clients=1, patterns_aggregated=1)


# ----------------------------------------------------------------------------------- admin
@pytest.mark.parametrize("table", STORE_TABLES)
def test_admin_sees_every_store(as_admin, world, table):
    for s in (world.a, world.b, world.c):
        assert _count(as_admin, table, s) >= 1


def test_admin_writes_for_any_store(as_admin, world):
    _insert_for(as_admin, "transactions", world, world.b)
    _insert_for(as_admin, "transactions", world, world.c)


# ----------------------------------------------------------------------------------- owner (FORCE)
@pytest.mark.parametrize("table", FORCED_TABLES)
def test_owner_scoped_to_a_store_is_held_to_it(schema_dsn, world, table):
    with connect(schema_dsn, AppContext.service(store_id=world.a), autocommit=True) as c:
        assert _count(c, table, world.a) >= 1
        assert _count(c, table, world.b) == 0
        if table != "privacy_configs":   # privacy_configs is one row per store: B already has one
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                _insert_for(c, table, world, world.b)


def test_owner_without_scope_sees_all(schema_dsn, world):
    with connect(schema_dsn, AppContext.service(), autocommit=True) as c:
        for table in STORE_TABLES:
            assert all(_count(c, table, s) >= 1 for s in (world.a, world.b, world.c))


def test_rls_enabled_on_the_seven_store_tables_and_forced_where_no_copy(conn):
    rows = {r[0]: r[1:] for r in conn.execute(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r'",
        (STORE_TABLES,))}
    assert rows == {t: (True, t in FORCED_TABLES) for t in STORE_TABLES}


def test_owner_copies_into_bulk_tables(schema_dsn, world):
    """COPY as the owner works on the bulk tables (it is refused wherever RLS applies)."""
    with psycopg.connect(schema_dsn) as c:
        assert not c.execute("SELECT row_security_active('transactions')").fetchone()[0]
        with c.cursor().copy("COPY transactions (store_id, items, quantities, unit_utilities, total_utility) FROM STDIN") as cp:
            cp.write_row((world.c, ["tea"], [1], [2], 2))
        c.rollback()


def test_noinherit_login_role_gets_privileges_only_through_the_session_layer(base_dsn, schema_dsn, world):
    from psycopg import sql

    from include.db.session import ensure_login_role

    name, password = f"t_api_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(base_dsn, autocommit=True) as c:
        ensure_login_role(c, name, password, ["store_manager", "admin"])
        ensure_login_role(c, name, password, ["store_manager", "admin"])  # idempotent
    try:
        dsn = psycopg.conninfo.make_conninfo(schema_dsn, user=name, password=password)
        with psycopg.connect(dsn, autocommit=True) as c:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                c.execute("SELECT count(*) FROM transactions")
        with connect(dsn, AppContext.store_manager(world.a), autocommit=True) as c:
            assert {r[0] for r in c.execute("SELECT DISTINCT store_id FROM transactions")} == {world.a}
        with connect(dsn, AppContext.admin(), autocommit=True) as c:
            assert _count(c, "transactions", world.b) >= 1
    finally:
        with psycopg.connect(base_dsn, autocommit=True) as c:
            c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
