"""Audit triggers: configuration changes and federated contributions reach activity_logs with who,
what, and old/new values, whatever client made them (psql included)."""
from __future__ import annotations

import glob
import shutil
import subprocess
import uuid
from decimal import Decimal

import psycopg
import pytest

from include.db import configs, privacy, rounds, stores, users
from include.db.session import AppContext, connect, transaction_as


def _psql() -> str:
    found = shutil.which("psql") or sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))[-1:]
    assert found, "psql binary not found"
    return found if isinstance(found, str) else found[0]


def _logs(conn, resource_id):
    return conn.execute(
        """SELECT action_type, action_description, user_id, store_id, additional_data FROM activity_logs
            WHERE resource_id = %s ORDER BY created_at, (additional_data->>'operation')""", (resource_id,)).fetchall()


@pytest.fixture
def config_key(conn):
    key = f"test_audit_{uuid.uuid4().hex[:8]}"
    configs.set_config(conn, key, 1)
    return key


def test_psql_change_of_server_configs_is_audited_with_old_and_new_value(schema_dsn, conn, config_key):
    cid, before = conn.execute("SELECT id, updated_at FROM server_configs WHERE config_key = %s", (config_key,)).fetchone()
    out = subprocess.run(
        [_psql(), "-X", "-v", "ON_ERROR_STOP=1", "-d", schema_dsn, "-c",
         f"UPDATE server_configs SET config_value = '7' WHERE config_key = '{config_key}'"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    logs = [r for r in _logs(conn, cid) if r[4]["operation"] == "UPDATE"]
    assert len(logs) == 1
    action_type, description, user_id, _store, data = logs[0]
    assert action_type == "config_change"
    assert (data["config_key"], data["old_value"], data["new_value"]) == (config_key, "1", "7")
    assert data["old"]["config_value"] == "1" and data["new"]["config_value"] == "7"
    assert data["changed"]["config_value"] == {"old": "1", "new": "7"}
    assert data["actor"]["actor"] == "platform" and data["actor"]["application_name"] == "psql"
    assert user_id is None
    assert "'1' -> '7'" in description
    updated_at, updated_by = conn.execute("SELECT updated_at, updated_by FROM server_configs WHERE id = %s",
                                          (cid,)).fetchone()
    assert updated_at > before and updated_by is None


def test_change_by_an_application_user_records_the_user(schema_dsn, conn, config_key, keyring):
    admin = users.create_user(conn, keyring, f"adm-{uuid.uuid4().hex[:6]}@example.com", "pw", "admin")
    with psycopg.connect(schema_dsn) as c, transaction_as(c, AppContext.service(user_id=admin)):
        configs.set_config(c, config_key, 9)
    cid, updated_by = conn.execute("SELECT id, updated_by FROM server_configs WHERE config_key = %s",
                                   (config_key,)).fetchone()
    assert updated_by == admin
    log = [r for r in _logs(conn, cid) if r[4]["operation"] == "UPDATE"][-1]
    assert log[2] == admin
    assert log[4]["actor"]["actor"] == str(admin) and log[4]["new_value"] == "9"
    assert configs.get_config(conn, config_key) == Decimal(9)


def test_insert_and_delete_of_configs_are_audited(conn, config_key):
    cid = conn.execute("SELECT id FROM server_configs WHERE config_key = %s", (config_key,)).fetchone()[0]
    conn.execute("DELETE FROM server_configs WHERE id = %s", (cid,))
    logs = _logs(conn, cid)
    assert [r[4]["operation"] for r in logs] == ["INSERT", "DELETE"]
    assert logs[1][4]["old_value"] == "1" and logs[1][4]["new_value"] is None


def test_truncate_of_configs_is_audited(migrated_dsn):
    with psycopg.connect(migrated_dsn, autocommit=True) as c:
        c.execute("TRUNCATE server_configs")
        row = c.execute("""SELECT action_type, additional_data FROM activity_logs
                            WHERE additional_data->>'operation' = 'TRUNCATE'""").fetchone()
    assert row[0] == "config_change" and row[1]["table"] == "server_configs"


def test_privacy_config_changes_by_a_store_manager_are_audited(login_roles, conn, keyring):
    store = stores.create_store(conn, "audited")
    pid = privacy.upsert_privacy_config(conn, store, epsilon="1.0")
    with connect(login_roles.dsns["store_manager"], AppContext.store_manager(store), autocommit=True) as c:
        privacy.upsert_privacy_config(c, store, epsilon="0.5", noise_type="gaussian")
    log = [r for r in _logs(conn, pid) if r[4]["operation"] == "UPDATE"]
    assert len(log) == 1
    action_type, _d, _u, store_id, data = log[0]
    assert action_type == "privacy_config_change" and store_id == store
    assert Decimal(str(data["changed"]["epsilon"]["old"])) == Decimal("1.0")
    assert Decimal(str(data["changed"]["epsilon"]["new"])) == Decimal("0.5")
    assert data["changed"]["noise_type"] == {"old": "laplace", "new": "gaussian"}
    assert data["actor"]["db_role"] == "app_store_manager"
    # updated_at is maintained
    created, updated = conn.execute("SELECT created_at, updated_at FROM privacy_configs WHERE id = %s", (pid,)).fetchone()
    assert updated >= created


def test_every_federated_contribution_is_audited(conn):
    store = stores.create_store(conn, "contributor")
    round_id, _ = rounds.create_round(conn)
    pid = rounds.add_participation(conn, round_id, store, 42, "0.25")
    logs = _logs(conn, pid)
    assert len(logs) == 1
    action_type, description, _u, store_id, data = logs[0]
    assert (action_type, store_id, data["operation"]) == ("federated_contribution", store, "INSERT")
    assert data["new"]["patterns_contributed"] == 42 and data["new"]["round_id"] == str(round_id)
    assert "42 patterns" in description
    # a retried contribution neither duplicates the row nor the audit entry
    assert rounds.add_participation(conn, round_id, store, 42, "0.25") == pid
    assert len(_logs(conn, pid)) == 1


def test_activity_logs_are_append_only(conn):
    from include.db.activity import log_activity

    lid = log_activity(conn, "test", "append-only check")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        conn.execute("UPDATE activity_logs SET action_description = 'x' WHERE id = %s", (lid,))
