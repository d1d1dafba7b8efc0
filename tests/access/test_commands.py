"""The users and stores commands on a database of the tests' own: bindings (one store per manager, one
region per coordinator), role changes, clear errors for bad input, nothing stored on refusal."""
from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.access.conftest import PASSWORD


def _store(cli, region=None) -> str:
    args = ["stores", "add", f"t-access-{uuid.uuid4().hex[:6]}", "--location", "Main St 1"]
    rc, out, err = cli(*args, *(["--region", str(region)] if region else []))
    assert rc == 0, err
    return out["store_id"]


def _row(dsn, sql, *args):
    with psycopg.connect(dsn) as c:
        return c.execute(sql, args).fetchone()


def test_store_manager_is_bound_to_exactly_one_store(cli, access_dsn):
    s1, s2 = _store(cli), _store(cli)
    email = f"m-{uuid.uuid4().hex[:6]}@t-access.example"
    rc, out, err = cli("users", "add", email, "--role", "store_manager", "--store", s1, "--password-stdin",
                       "--no-airflow", stdin=PASSWORD + "\n")
    assert rc == 0, err
    uid = out["user_id"]
    assert _row(access_dsn, "SELECT manager_id::text FROM stores WHERE id = %s", s1) == (uid,)
    rc, out, err = cli("stores", "assign-manager", s2, email)       # moves: still one store
    assert rc == 0, err
    assert _row(access_dsn, "SELECT count(*), min(id::text) FROM stores WHERE manager_id = %s", uid) == (1, s2)
    rc, _, err = cli("stores", "assign-manager", s2, "--none")
    assert rc == 0 and _row(access_dsn, "SELECT manager_id FROM stores WHERE id = %s", s2) == (None,)


def test_users_add_refuses_bad_input_and_stores_nothing(cli, access_dsn):
    store = _store(cli)
    before = _row(access_dsn, "SELECT count(*) FROM users")
    cases = [
        (["--role", "store_manager"], PASSWORD, "bound to exactly one store"),
        (["--role", "store_manager", "--store", store, "--region", str(uuid.uuid4())], PASSWORD, "exactly one store"),
        (["--role", "regional_coordinator"], PASSWORD, "bound to one region"),
        (["--role", "admin", "--store", store], PASSWORD, "an admin is bound to no store"),
        (["--role", "admin"], "short", "at least 12 characters"),
        (["--role", "store_manager", "--store", str(uuid.uuid4())], PASSWORD, "no store"),
    ]
    for args, password, words in cases:
        rc, _, err = cli("users", "add", f"x-{uuid.uuid4().hex[:6]}@t-access.example", *args, "--password-stdin",
                         "--no-airflow", stdin=password + "\n")
        assert rc == 2 and words in err, (args, err)
    rc, _, err = cli("users", "add", "no-at-sign", "--role", "admin", "--password-stdin", "--no-airflow",
                     stdin=PASSWORD + "\n")
    assert rc == 2 and "'@'" in err, err
    assert _row(access_dsn, "SELECT count(*) FROM users") == before


def test_role_change_moves_the_binding_and_the_database_guards_it(cli, access_dsn):
    region = uuid.uuid4()
    store = _store(cli, region)
    email = f"r-{uuid.uuid4().hex[:6]}@t-access.example"
    rc, out, err = cli("users", "add", email, "--role", "store_manager", "--store", store, "--password-stdin",
                       "--no-airflow", stdin=PASSWORD + "\n")
    uid = out["user_id"]
    rc, _, err = cli("users", "set-role", email, "regional_coordinator", "--region", str(region), "--no-airflow")
    assert rc == 0, err
    assert _row(access_dsn, "SELECT role FROM users WHERE id = %s", uid) == ("regional_coordinator",)
    assert _row(access_dsn, "SELECT manager_id FROM stores WHERE id = %s", store) == (None,)
    assert _row(access_dsn, "SELECT region_id FROM user_regions WHERE user_id = %s", uid) == (region,)
    rc, _, err = cli("stores", "assign-manager", store, uid)
    assert rc == 2 and "not a store_manager" in err
    with psycopg.connect(access_dsn) as c:  # even from SQL, a binding cannot contradict the role
        with pytest.raises(psycopg.errors.CheckViolation, match="a store_manager is required"):
            c.execute("UPDATE stores SET manager_id = %s WHERE id = %s", (uid, store))
        c.rollback()
        with pytest.raises(psycopg.errors.CheckViolation, match="coordinates a region"):
            c.execute("UPDATE users SET role = 'admin' WHERE id = %s", (uid,))


def test_stores_commands(cli, access_dsn):
    region = uuid.uuid4()
    store = _store(cli)
    rc, _, err = cli("stores", "set-region", store, str(region))
    assert rc == 0, err
    rc, _, err = cli("stores", "deactivate", store)
    assert rc == 0, err
    assert _row(access_dsn, "SELECT region_id, is_active, location FROM stores WHERE id = %s", store) == \
        (region, False, "Main St 1")
    rc, _, err = cli("stores", "set-region", str(uuid.uuid4()), str(region))
    assert rc == 2 and "no store" in err
    rc, _, err = cli("stores", "set-region", "not-a-uuid", str(region))
    assert rc == 2 and "must be a UUID" in err
