"""The migrated database matches the spec (docs/spec/database-design.md), read from
information_schema / pg_catalog: every table, column (name, type, nullability, default), CHECK, foreign
key, unique constraint, index and default server_configs row. Deviations forced by partitioning are
listed here explicitly, with the reason, and nothing else may differ."""
from __future__ import annotations

import re

import pytest

from tests.schema.schemaspec import load_spec, normalize_default

SPEC_TABLES = ["users", "stores", "transaction_files", "transactions", "mining_jobs", "local_patterns",
               "privacy_configs", "privacy_applications", "federated_rounds", "round_participations",
               "global_patterns", "server_configs", "activity_logs", "performance_metrics"]

# A partitioned table (and a hypertable) needs its time column in every unique index, which also makes
# the column NOT NULL (migration 0002).
PK_DEVIATIONS = {"activity_logs": ["id", "created_at"], "performance_metrics": ["id", "recorded_at"]}
NOT_NULL_DEVIATIONS = {("activity_logs", "created_at"), ("performance_metrics", "recorded_at")}


def test_spec_parsed_completely(spec):
    assert sorted(spec.tables) == sorted(SPEC_TABLES)
    assert sum(len(c) for c in spec.tables.values()) == 123
    assert len(spec.indexes) == 6
    assert len(spec.server_configs) == 6


def _columns(conn, table):
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped""", (table,)).fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.mark.parametrize("table", SPEC_TABLES)
def test_table_columns_match_spec(conn, spec, table):
    actual = _columns(conn, table)
    assert actual, f"table {table} is missing"
    # information_schema agrees that the table exists in the public schema
    assert conn.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = 'public' AND table_name = %s",
                        (table,)).fetchone()
    for name, col in spec.tables[table].items():
        assert name in actual, f"{table}.{name} is missing"
        typ, not_null, default = actual[name]
        assert typ == col.type, f"{table}.{name}: type {typ}, spec {col.type}"
        expected_nn = col.not_null or (table, name) in NOT_NULL_DEVIATIONS
        assert not_null == expected_nn, f"{table}.{name}: NOT NULL is {not_null}, spec {col.not_null}"
        assert normalize_default(default) == col.default, f"{table}.{name}: default {default!r}, spec {col.default!r}"


@pytest.mark.parametrize("table", SPEC_TABLES)
def test_primary_key_matches_spec(conn, spec, table):
    pk = conn.execute(
        """SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_constraint c
             CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
            WHERE c.conrelid = %s::regclass AND c.contype = 'p'""", (table,)).fetchone()[0]
    expected = PK_DEVIATIONS.get(table) or [c.name for c in spec.tables[table].values() if c.primary_key]
    assert pk == expected


@pytest.mark.parametrize("table", SPEC_TABLES)
def test_foreign_keys_match_spec(conn, spec, table):
    fks = set(conn.execute(
        """SELECT a.attname, c.confrelid::regclass::text, fa.attname FROM pg_constraint c
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
             JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1]
            WHERE c.conrelid = %s::regclass AND c.contype = 'f' AND cardinality(c.conkey) = 1""",
        (table,)).fetchall())
    expected = {(c.name, *c.references) for c in spec.tables[table].values() if c.references}
    assert expected <= fks, f"{table}: missing foreign keys {expected - fks}"
    assert fks == expected, f"{table}: foreign keys beyond the spec {fks - expected}"


@pytest.mark.parametrize("table", SPEC_TABLES)
def test_full_migration_set_keeps_spec_columns(full_dsn, spec, table):
    """With every area's migrations applied, each spec table and column still exists with its type."""
    import psycopg

    with psycopg.connect(full_dsn) as c:
        actual = _columns(c, table)
    for name, col in spec.tables[table].items():
        assert name in actual, f"{table}.{name} is missing after all migrations"
        assert actual[name][0] == col.type, f"{table}.{name}: type {actual[name][0]}, spec {col.type}"


@pytest.mark.parametrize("table", SPEC_TABLES)
def test_checks_match_spec(conn, spec, table):
    defs = [r[0] for r in conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
        (table,))]
    actual = set()
    for d in defs:
        m = re.search(r"\(\(?(\w+)\)?(?:::\w+)? = ANY", d)
        if m:
            actual.add((m.group(1), frozenset(re.findall(r"'([^']*)'::", d))))
    expected = {c.check_in for c in spec.tables[table].values() if c.check_in}
    assert expected <= actual, f"{table}: CHECKs missing or different: {expected - actual} (have {defs})"


@pytest.mark.parametrize("table", SPEC_TABLES)
def test_unique_constraints_match_spec(conn, spec, table):
    uniques = {r[0] for r in conn.execute(
        """SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = %s::regclass AND i.indisunique AND NOT i.indisprimary AND i.indnatts = 1
              AND i.indexprs IS NULL AND i.indpred IS NULL""", (table,))}
    expected = {c.name for c in spec.tables[table].values() if c.unique}
    assert expected <= uniques


def test_spec_indexes_exist(conn, spec):
    for name, (table, cols) in spec.indexes.items():
        row = conn.execute("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' AND indexname = %s",
                           (name,)).fetchone()
        assert row, f"index {name} is missing"
        assert row[0] == table
        got = re.search(r"USING btree \((.*)\)$", row[1]).group(1)
        assert " ".join(got.split()).lower() == cols, f"{name}: {row[1]}"


def test_spec_server_config_rows(temp_databases):
    """On a freshly migrated database, the spec's six rows are there with the spec's values."""
    import psycopg
    from include.db.migrate import migrate

    dsn = temp_databases.create()
    migrate(dsn, target=99)
    with psycopg.connect(dsn) as c:
        rows = {r[0]: r[1:] for r in c.execute(
            "SELECT config_key, config_value, data_type, description FROM server_configs")}
    for key, value, data_type, description in load_spec().server_configs:
        assert rows[key] == (value, data_type, description)
    # the platform settings of 0007 are there too, e.g. the ingestion reject ratio
    assert rows["ingest_max_reject_ratio"][:2] == ("0.05", "number")


def test_timeseries_tables_are_partitioned_monthly(conn):
    assert conn.execute("SELECT timeseries_backend()").fetchone()[0] == "native"
    for table, col in (("activity_logs", "created_at"), ("performance_metrics", "recorded_at")):
        strategy, key = conn.execute(
            """SELECT p.partstrat, a.attname FROM pg_partitioned_table p
                 JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
                WHERE p.partrelid = %s::regclass""", (table,)).fetchone()
        assert (strategy, key) == ("r", col)
        parts = conn.execute("SELECT * FROM timeseries_partitions(%s)", (table,)).fetchall()
        assert any(p[3] for p in parts), "DEFAULT partition missing"
        covered = conn.execute(
            """SELECT count(DISTINCT m.n) FROM generate_series(0, 3) AS m(n)
                 JOIN timeseries_partitions(%s) p ON NOT p.is_default
                  AND p.range_start <= now() + make_interval(months => m.n)
                  AND p.range_end > now() + make_interval(months => m.n)""", (table,)).fetchone()[0]
        assert covered == 4, f"{table}: partitions for this month and the 3 ahead expected"
