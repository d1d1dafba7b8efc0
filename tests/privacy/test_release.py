"""The privatize step for mined stores (include.privacy.release and DAG privatize_store_patterns) against the
real PostgreSQL: planning, rows written, retries, refusals, keyed ids, and a run through `airflow dags test`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from include.privacy import mechanisms as M
from include.privacy.budget import BudgetExceeded
from include.privacy.hashing import HashKey, HashKeyError
from include.privacy.release import EPOCH, ReleaseJob, plan_releases, release_name_for, release_store
from tests.privacy.conftest import T0

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(7, 39))


def mined(stores, *, epsilon=2.0, noise_type="gaussian", hash_patterns=False, n=1500,
          patterns=(("a",), ("a", "d"), ("b", "e"))):
    """A store with ``n`` transactions (7 minutes apart) and a completed mining job over [T0, T0 + 30 days)."""
    sid = stores.create(epsilon=epsilon, noise_type=noise_type, hash_patterns=hash_patterns)
    # a heavy pair (a, d) in every basket, plus one light item: enough to clear the threshold
    stores.add_transactions(sid, [[("a", 1, "30"), ("d", 1, "40"), ("bcefgh"[k % 6], 1, "1")] for k in range(n)],
                            step=timedelta(minutes=7))
    job, pids = stores.add_mining_job(sid, [list(p) for p in patterns], max_pattern_length=2)
    with psycopg.connect(stores.dsn) as c:
        c.execute("UPDATE mining_jobs SET window_start = %s, window_end = %s, completed_at = now() WHERE id = %s",
                  (T0, T0 + timedelta(days=30), job))
    return sid, job, pids


def ledger(conn, sid):
    with conn.transaction():
        return conn.execute("SELECT status, release_name, round_id, epsilon_display FROM privacy_budget_ledger "
                            "WHERE store_id = %s ORDER BY created_at", (sid,)).fetchall()


def applications(conn, sid):
    with conn.transaction():
        return conn.execute("SELECT released_items, pattern_id, original_utility, noisy_utility, noise_added, "
                            "epsilon_used, ledger_id FROM privacy_applications WHERE store_id = %s", (sid,)).fetchall()


def test_plan_picks_the_latest_completed_job_and_names_what_cannot_release(conn, stores):
    ok, job, _ = mined(stores)
    later, _ = stores.add_mining_job(ok, [["b"]], max_pattern_length=2)
    with psycopg.connect(stores.dsn) as c:
        c.execute("UPDATE mining_jobs SET completed_at = now() + interval '1 minute' WHERE id = %s", (later,))
        no_cfg = str(c.execute("INSERT INTO stores (name) VALUES ('no-config') RETURNING id").fetchone()[0])
    unmined = stores.create()
    inactive, _, _ = mined(stores)
    with psycopg.connect(stores.dsn) as c:
        c.execute("UPDATE stores SET is_active = false WHERE id = %s", (inactive,))
    ghost = str(uuid.uuid4())

    jobs, skipped = plan_releases(conn, [ok, no_cfg, unmined, inactive, ghost])
    assert [(j.store_id, j.mining_job_id, j.max_pattern_length) for j in jobs] == [(ok, later, 2)]
    assert jobs[0].window_start == EPOCH.isoformat()          # the later job has no window start: from the first
    assert {s["store_id"]: s["reason"] for s in skipped} == {
        ghost: "unknown store", no_cfg: "no privacy_configs row", unmined: "no completed mining job",
        inactive: "store is not active"}
    jobs, _ = plan_releases(conn, [ok], max_pattern_length=1)
    assert jobs[0].max_pattern_length == 1


def test_release_writes_linked_applications_and_one_charge_and_a_retry_draws_nothing(conn, stores):
    sid, job, pids = mined(stores, epsilon=2.0)
    [rj], _ = plan_releases(conn, [sid])
    assert rj.mining_job_id == job and rj.window_start == T0.isoformat()
    name = release_name_for("contribution", "manual__2026-11-25T00:00:00+00:00")
    draws = M.noise_draws()
    c = release_store(conn, rj, epsilon=2.0, release_name=name)
    assert M.noise_draws() == draws + 2                      # threshold + support
    assert c.source == "threshold" and c.mode == "local" and c.patterns
    assert c.epsilon == pytest.approx(2.0, rel=1e-6) and c.sizes == (1, 2)

    rows = applications(conn, sid)
    assert len(rows) == len(c.patterns)
    assert sorted(tuple(r[0]) for r in rows) == sorted(p.items for p in c.patterns)
    for items, pattern_id, orig, noisy, noise, eps, ledger_id in rows:
        assert noisy - orig == noise and str(ledger_id) == c.ledger_id and float(eps) == pytest.approx(c.epsilon)
        assert (pattern_id is not None) == (tuple(sorted(items)) in pids)
    by = {tuple(r[0]): r for r in rows}
    assert {("a",), ("d",), ("a", "d")} <= set(by)           # 1500 × 70.00 clears the threshold
    assert str(by[("a", "d")][1]) == pids[("a", "d")] and str(by[("a",)][1]) == pids[("a",)]
    assert ledger(conn, sid) == [("charged", name, None, pytest.approx(c.epsilon))]

    draws = M.noise_draws()
    again = release_store(conn, rj, epsilon=2.0, release_name=name)
    assert M.noise_draws() == draws and again == c
    assert len(applications(conn, sid)) == len(rows) and len(ledger(conn, sid)) == 1


def test_a_reservation_left_by_a_dead_attempt_is_aborted_and_drawn_afresh(conn, stores):
    from include.privacy import ledger as L
    from include.privacy.budget import Budget
    from include.privacy.mechanisms import Cost

    sid, _, _ = mined(stores)
    [rj], _ = plan_releases(conn, [sid])
    name = release_name_for("contribution", "run-1")
    L.reserve(conn, store_id=sid, window_start=T0, window_end=T0 + timedelta(days=30),
              cost=Cost("pure", 0.0, 0.2, 0.0), mechanism="laplace_threshold", budget=Budget(1.0, "laplace"),
              release_name=name)
    c = release_store(conn, rj, epsilon=0.5, release_name=name)
    statuses = [r[0] for r in ledger(conn, sid)]
    assert sorted(statuses) == ["aborted", "charged"]
    assert len(applications(conn, sid)) == len(c.patterns)


def test_over_budget_is_refused_before_any_noise_and_writes_nothing(conn, stores):
    sid, _, _ = mined(stores, epsilon=0.5, noise_type="laplace")   # pure ε: 0.4 + 0.2 > 0.5
    [rj], _ = plan_releases(conn, [sid])
    release_store(conn, rj, epsilon=0.4, release_name=release_name_for("a", "r1"))
    draws = M.noise_draws()
    with pytest.raises(BudgetExceeded, match=sid):
        release_store(conn, rj, epsilon=0.2, release_name=release_name_for("b", "r1"))
    assert M.noise_draws() == draws
    assert [r[0] for r in ledger(conn, sid)] == ["charged"]


def test_hashed_store_releases_keyed_ids_and_needs_the_key(conn, stores):
    sid, _, _ = mined(stores, hash_patterns=True)
    [rj], _ = plan_releases(conn, [sid])
    with pytest.raises(HashKeyError, match="platform_privacy_hmac"):
        release_store(conn, rj, epsilon=0.5, release_name=release_name_for("x", "r"))
    assert ledger(conn, sid) == []
    c = release_store(conn, rj, epsilon=0.5, release_name=release_name_for("x", "r"), hash_key=KEY)
    key = HashKey(KEY)
    names = {key.item_id(i): i for i in "abcdefgh"}
    assert c.hashed and c.patterns
    for p in c.patterns:
        assert all(h in names for h in p.items)           # 16 hex digits, never an item name
    assert not any(set(r[0]) & set("abcdefgh") for r in applications(conn, sid))


def test_release_name_is_bounded():
    with pytest.raises(ValueError, match="longer than 100"):
        release_name_for("x" * 60, "manual__" + "y" * 40)
    assert ReleaseJob.of({**ReleaseJob("s", "j", "a", "b", 2).as_dict(), "extra": 1}) == ReleaseJob("s", "j", "a", "b", 2)


def test_airflow_dags_test_privatizes_the_mined_stores(privacy_dsn, stores):
    a, _, _ = mined(stores)
    b, _, _ = mined(stores, epsilon=3.0, noise_type="laplace")
    d = conninfo_to_dict(privacy_dsn)
    env = dict(os.environ)
    env["AIRFLOW_CONN_PLATFORM_POSTGRES"] = json.dumps({
        "conn_type": "postgres", "host": d.get("host") or "127.0.0.1", "port": int(d.get("port") or 5432),
        "login": d.get("user"), "password": d.get("password"), "schema": d["dbname"]})
    conf = {"store_ids": [a, b], "epsilon": 2.0, "release_name": "nightly", "max_pattern_length": 2}
    airflow = str(Path(sys.executable).parent / "airflow")
    out = subprocess.run([airflow, "dags", "test", "privatize_store_patterns", "-c", json.dumps(conf)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    with psycopg.connect(privacy_dsn) as c:
        for sid in (a, b):
            [(status, name, round_id, eps)] = ledger(c, sid)
            assert status == "charged" and name.startswith("nightly@") and round_id is None
            assert eps == pytest.approx(2.0, rel=1e-6)
            rows = applications(c, sid)
            assert all(len(r[0]) <= 2 for r in rows) and (rows or sid == b)
            n = c.execute("SELECT jsonb_array_length(output->'patterns') FROM privacy_budget_ledger "
                          "WHERE store_id = %s", (sid,)).fetchone()[0]
            assert n == len(rows)
    assert "Marking run <DagRun privatize_store_patterns" in log and "successful" in log
