"""Native path of migration 0002: monthly partitions created ahead, rows outside them kept in the
DEFAULT partition and moved when their month is created, partitions dropped before a cutoff, and the
hourly/daily rollup of performance_metrics."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import psycopg
import pytest

from include.db import activity, metrics, stores
from include.db.session import AppContext, connect


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


@pytest.fixture
def tsconn(migrated_dsn):
    with psycopg.connect(migrated_dsn, autocommit=True) as c:
        yield c


def _partition_of(conn, table, rid):
    return conn.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", (rid,)).fetchone()[0]


def test_partitions_lifecycle(tsconn):
    assert metrics.timeseries_backend(tsconn) == "native"
    old = tsconn.execute("""INSERT INTO activity_logs (action_type, action_description, created_at)
                            VALUES ('t', 'old row', %s) RETURNING id""", (utc(2001, 1, 15, 12),)).fetchone()[0]
    older = tsconn.execute("""INSERT INTO activity_logs (action_type, action_description, created_at)
                              VALUES ('t', 'older row', %s) RETURNING id""", (utc(2000, 6, 1),)).fetchone()[0]
    assert _partition_of(tsconn, "activity_logs", old) == "activity_logs_default"

    created = metrics.create_partitions(tsconn, "activity_logs", utc(2001, 1, 1), utc(2001, 3, 1))
    assert created == ["activity_logs_p200101", "activity_logs_p200102"]
    assert _partition_of(tsconn, "activity_logs", old) == "activity_logs_p200101"
    assert metrics.create_partitions(tsconn, "activity_logs", utc(2001, 1, 1), utc(2001, 3, 1)) == []
    parts = {p[0]: p for p in metrics.partitions(tsconn, "activity_logs")}
    assert parts["activity_logs_p200101"][1:3] == (utc(2001, 1, 1), utc(2001, 2, 1))

    dropped = metrics.drop_partitions_before(tsconn, "activity_logs", utc(2001, 2, 1))
    assert dropped == ["activity_logs_p200101", "activity_logs_default: 1 rows"]
    assert tsconn.execute("SELECT count(*) FROM activity_logs WHERE id = ANY(%s)", ([old, older],)).fetchone()[0] == 0
    assert "activity_logs_p200102" in {p[0] for p in metrics.partitions(tsconn, "activity_logs")}
    # indexes and triggers of the parent reach new partitions
    assert tsconn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'activity_logs_p200102'").fetchone()[0] >= 5
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        tsconn.execute("UPDATE activity_logs SET action_type = 'x'")


def test_maintain_is_idempotent_and_checks_tables(tsconn):
    assert metrics.maintain(tsconn) == []
    created = metrics.maintain(tsconn, months_ahead=5)
    assert len(created) == 4 and all(n.endswith(tuple("0123456789")) for n in created)
    with pytest.raises(ValueError):
        metrics.drop_partitions_before(tsconn, "transactions", utc(2001, 1, 1))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a time-series table"):
        tsconn.execute("SELECT timeseries_drop_partitions_before('users', now())")


def test_rollup_refresh_is_exact_and_idempotent(tsconn):
    s = stores.create_store(tsconn, "metrics")
    name = f"rows_loaded_{uuid.uuid4().hex[:6]}"
    metrics.copy_metrics(tsconn, [metrics.Metric("ingest", name, Decimal(v), store_id=s, recorded_at=t)
                                  for v, t in ((1, utc(2002, 3, 4, 10, 5)), (3, utc(2002, 3, 4, 10, 40)),
                                               ("5.5", utc(2002, 3, 4, 11, 10)))])
    for _ in range(2):
        metrics.refresh_rollup(tsconn, utc(2002, 3, 4), utc(2002, 3, 4, 23))
        rows = tsconn.execute(
            """SELECT bucket_width, bucket_start, sample_count, sum_value, min_value, max_value, round(avg_value, 10)
                 FROM performance_metrics_rollup WHERE metric_name = %s ORDER BY 1, 2""", (name,)).fetchall()
        assert rows == [
            ("day", utc(2002, 3, 4), 3, Decimal("9.5"), Decimal(1), Decimal("5.5"), Decimal("3.1666666667")),
            ("hour", utc(2002, 3, 4, 10), 2, Decimal(4), Decimal(1), Decimal(3), Decimal("2.0000000000")),
            ("hour", utc(2002, 3, 4, 11), 1, Decimal("5.5"), Decimal("5.5"), Decimal("5.5"), Decimal("5.5000000000")),
        ]
    assert metrics.purge_rollup(tsconn, utc(2002, 3, 4, 11)) == 2
    # detail can go while the aggregates stay (spec 4.1: detail 6 months, aggregates 2 years)
    metrics.create_partitions(tsconn, "performance_metrics", utc(2002, 3, 1), utc(2002, 4, 1))
    metrics.drop_partitions_before(tsconn, "performance_metrics", utc(2002, 4, 1))
    assert tsconn.execute("SELECT count(*) FROM performance_metrics_rollup WHERE metric_name = %s",
                          (name,)).fetchone()[0] == 1


def test_application_roles_cannot_run_maintenance(login_roles, schema_dsn):
    with connect(login_roles.dsns["admin"], AppContext.admin(), autocommit=True) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
            c.execute("SELECT timeseries_maintain()")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("DELETE FROM activity_logs")


def test_store_manager_reads_its_activity_and_metrics_only(login_roles, conn):
    a, b = stores.create_store(conn, "A"), stores.create_store(conn, "B")
    for s in (a, b):
        activity.log_activity(conn, "ingest", "loaded", store_id=s)
        metrics.record_metric(conn, "ingest", "rows", 10, store_id=s)
    with connect(login_roles.dsns["store_manager"], AppContext.store_manager(a), autocommit=True) as c:
        for table in ("activity_logs", "performance_metrics"):
            assert {r[0] for r in c.execute(f"SELECT DISTINCT store_id FROM {table}")} == {a}
        activity.log_activity(c, "viewed", "dashboard", store_id=a)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            activity.log_activity(c, "viewed", "dashboard", store_id=b)
