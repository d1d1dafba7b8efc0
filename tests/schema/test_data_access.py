"""The data-access modules of include/db against the real database."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from include.db import activity, configs, mining, stores, transactions
from include.db.session import AppContext, ContextError, connect, transaction_as


def test_copy_and_stream_transactions_exactly(schema_dsn):
    with psycopg.connect(schema_dsn) as c:
        s = stores.create_store(c, "bulk")
        f = transactions.register_file(c, s, "day1.csv", 123, "csv", s3_bucket="platform-data", s3_key="incoming/x")
        t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        rows = [transactions.Transaction(s, [f"item{i % 7}", "bread"], [Decimal("1.5"), Decimal(2)],
                                         [Decimal("0.3333333333333333333333"), Decimal("2.10")],
                                         Decimal("1.5") * Decimal("0.3333333333333333333333") + Decimal("4.20"),
                                         transaction_date=t0 + timedelta(minutes=i), file_id=f) for i in range(2500)]
        assert transactions.copy_transactions(c, rows) == 2500
        transactions.set_file_status(c, f, "completed")
        c.commit()
        batches = list(transactions.iter_transactions(c, s, batch_size=1000))
        assert [len(b) for b in batches] == [1000, 1000, 500]
        first = batches[0][0]
        assert first.unit_utilities == [Decimal("0.3333333333333333333333"), Decimal("2.10")]
        assert first.total_utility == rows[0].total_utility and first.items == ["item0", "bread"]
        assert transactions.count_transactions(c, s, t0, t0 + timedelta(minutes=10)) == 10
        assert transactions.get_file(c, f).processing_status == "completed"
        with pytest.raises(ValueError):
            transactions.set_file_status(c, f, "done")
        with pytest.raises(LookupError):
            transactions.set_file_status(c, uuid.uuid4(), "failed", "x")


def test_mining_job_lifecycle(conn):
    s = stores.create_store(conn, "miner")
    job = mining.create_job(conn, s, Decimal(10), Decimal("0.05"), max_pattern_length=3)
    mining.start_job(conn, job)
    mining.complete_job(conn, job, execution_time_seconds=1.25, memory_used_mb=33, patterns_found=0)
    status, found, started, completed = conn.execute(
        "SELECT status, patterns_found, started_at, completed_at FROM mining_jobs WHERE id = %s", (job,)).fetchone()
    assert (status, found) == ("completed", 0) and completed >= started
    with pytest.raises(LookupError, match="is completed"):
        mining.complete_job(conn, job, execution_time_seconds=1, memory_used_mb=1, patterns_found=1)
    job2 = mining.create_job(conn, s, Decimal(10), Decimal("0.05"))
    mining.fail_job(conn, job2, "engine crashed")
    assert conn.execute("SELECT status, error_message FROM mining_jobs WHERE id = %s", (job2,)).fetchone() == \
        ("failed", "engine crashed")


def test_configs_are_typed(conn):
    assert configs.get_config(conn, "min_clients_per_round") == Decimal(0)
    assert configs.get_config(conn, "ingest_max_reject_ratio") == Decimal("0.05")
    key = f"test_cfg_{uuid.uuid4().hex[:6]}"
    configs.set_config(conn, key, {"a": [1, 2]})
    configs.set_config(conn, key + "_b", True)
    assert configs.get_config(conn, key) == {"a": [1, 2]} and configs.get_config(conn, key + "_b") is True
    assert configs.get_config(conn, "no_such_key", None) is None
    with pytest.raises(configs.ConfigError):
        configs.get_config(conn, "no_such_key")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO server_configs (config_key, config_value, data_type) VALUES (%s, '1', 'integer')", (key + "_c",))


def test_activity_log_takes_the_session_user(schema_dsn, keyring):
    from include.db import users

    with psycopg.connect(schema_dsn) as c:
        uid = users.create_user(c, keyring, f"ops-{uuid.uuid4().hex[:6]}@example.com", "pw", "admin")
        c.commit()
        with transaction_as(c, AppContext.service(user_id=uid)):
            lid = activity.log_activity(c, "ingest_run", "loaded 10 rows", additional_data={"rows_loaded": 10})
        row = c.execute("SELECT user_id, additional_data FROM activity_logs WHERE id = %s", (lid,)).fetchone()
        assert row == (uid, {"rows_loaded": 10})
        # the scope of transaction_as ended with its transaction
        assert c.execute("SELECT app_current_user_id()").fetchone()[0] is None
        assert activity.recent_activity(c, action_type="ingest_run", limit=1000)


def test_context_validation():
    with pytest.raises(ContextError, match="needs store_id"):
        AppContext.store_manager(None)
    with pytest.raises(ContextError, match="needs region_id"):
        AppContext("regional_coordinator")
    with pytest.raises(ContextError, match="must be a UUID"):
        AppContext.service(store_id="store-1")
    with pytest.raises(ContextError, match="role must be one of"):
        AppContext("root")


def test_service_context_scopes_the_owner(schema_dsn):
    with psycopg.connect(schema_dsn, autocommit=True) as c:
        a, b = stores.create_store(c, "A"), stores.create_store(c, "B")
        ja, jb = (mining.create_job(c, s, Decimal(1), Decimal(1)) for s in (a, b))
    with connect(schema_dsn, AppContext.service(store_id=a), autocommit=True) as c:
        assert c.execute("SELECT app_current_role(), app_current_store_id()").fetchone() == ("service", a)
        mining.start_job(c, ja)
        with pytest.raises(LookupError, match="outside the session's store"):
            mining.start_job(c, jb)
