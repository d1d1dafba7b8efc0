"""Mining runs against the real PostgreSQL: the job lifecycle, the written patterns, failures, retries,
superseding, windows, guard rails (local path; the Spark path is in test_mine_spark.py)."""
from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from include.db.mining import read_local_patterns
from include.mine import GuardRailError, MiningError, ParameterError
from include.mine.jobs import plan_runs, run_job
from include.mine.params import MiningSettings, RunRequest, resolve_thresholds
from include.mine.store import get_job
from include.mining import mine
from tests.mine.conftest import add_transactions, make_store, synthetic_rows

ROWS = synthetic_rows(1, 400)
PARAMS = {"min_utility_ratio": 0.01, "max_pattern_length": 4}


def plan_one(dsn, store_id, **params) -> uuid.UUID:
    req = RunRequest.from_params({"store_ids": [str(store_id)], **PARAMS, **params})
    with psycopg.connect(dsn) as c:
        p = plan_runs(c, req, run_key=f"test/{uuid.uuid4()}")
        c.commit()
    assert len(p.jobs) == 1, p.skipped
    return uuid.UUID(p.jobs[0].job_id)


def stored(dsn, store_id, job_id=None):
    with psycopg.connect(dsn) as c:
        return read_local_patterns(c, store_id, job_id=job_id)


def as_map(patterns):
    return {tuple(p.items): (Decimal(p.utility), float(p.support), float(p.confidence), p.pattern_length)
            for p in patterns}


def engine_map(rows, job):
    got = mine(rows, job.min_utility, job.min_support, job.max_pattern_length, job.use_pruning)
    return {p.items: (Decimal(p.utility), p.support, p.confidence, p.pattern_length) for p in got}


def test_job_goes_through_every_status_and_patterns_equal_the_engine(mine_dsn):
    store_id = make_store(mine_dsn, ROWS)
    job_id = plan_one(mine_dsn, store_id, batch_size=64)
    with psycopg.connect(mine_dsn) as c:
        job = get_job(c, job_id)
    assert job.status == "pending" and job.started_at is None
    assert job.n_transactions == len(ROWS) and job.batch_size == 64 and job.engine_path == "local"

    seen = set()
    done = threading.Event()

    def watch():
        with psycopg.connect(mine_dsn, autocommit=True) as c:
            while not done.is_set():
                seen.add(c.execute("SELECT status FROM mining_jobs WHERE id = %s", (job_id,)).fetchone()[0])
                time.sleep(0.005)

    t = threading.Thread(target=watch)
    t.start()
    try:
        result = run_job(mine_dsn, job_id)
    finally:
        done.set()
        t.join()
    assert {"pending", "running", "completed"} <= seen | {"pending"}
    assert "running" in seen and "completed" in seen
    with psycopg.connect(mine_dsn) as c:
        job = get_job(c, job_id)
    assert job.status == "completed" and job.error_message is None
    assert job.started_at <= job.completed_at
    assert job.execution_time_seconds > 0
    assert 5 < job.memory_used_mb < 2048  # measured peak RSS of the mining process (VmHWM)
    expected = engine_map(ROWS, job)
    assert job.patterns_found == len(expected) == result["patterns_found"] > 10
    assert as_map(stored(mine_dsn, store_id)) == expected


def test_injected_failure_marks_failed_and_keeps_old_patterns_then_retry_does_not_duplicate(mine_dsn):
    store_id = make_store(mine_dsn, ROWS)
    first = plan_one(mine_dsn, store_id)
    run_job(mine_dsn, first)
    old = as_map(stored(mine_dsn, store_id))
    assert old

    with psycopg.connect(mine_dsn) as c:  # new transactions, a new run over everything
        add_transactions(c, store_id, synthetic_rows(2, 50), start=datetime(2026, 6, 1, tzinfo=timezone.utc))
        c.commit()
    second = plan_one(mine_dsn, store_id, window_start="2000-01-01T00:00:00Z")
    with pytest.raises(MiningError, match="injected failure after writing"):
        run_job(mine_dsn, second, inject_failure="after_copy")
    with psycopg.connect(mine_dsn) as c:
        job = get_job(c, second)
    assert job.status == "failed" and "injected failure" in job.error_message
    assert job.completed_at is not None and job.memory_used_mb > 0
    assert as_map(stored(mine_dsn, store_id)) == old  # untouched, nothing of the failed attempt
    assert stored(mine_dsn, store_id, second) == []

    # the retry (Airflow runs the same task again): failed -> running -> completed, no duplicates
    r = run_job(mine_dsn, second)
    again = run_job(mine_dsn, second)  # a retry after a success that was not reported
    assert again.get("reused") and again["patterns_found"] == r["patterns_found"]
    with psycopg.connect(mine_dsn) as c:
        job = get_job(c, second)
        n_rows = c.execute("SELECT count(*) FROM local_patterns WHERE store_id = %s", (store_id,)).fetchone()[0]
    assert job.status == "completed" and job.error_message is None
    expected = engine_map(ROWS + synthetic_rows(2, 50), job)
    assert n_rows == job.patterns_found == len(expected)  # old patterns superseded, new ones once
    assert as_map(stored(mine_dsn, store_id)) == expected


def test_superseding_keeps_patterns_a_privacy_release_references(mine_dsn):
    store_id = make_store(mine_dsn, ROWS)
    first = plan_one(mine_dsn, store_id)
    run_job(mine_dsn, first)
    with psycopg.connect(mine_dsn) as c:
        ref = c.execute("SELECT id FROM local_patterns WHERE mining_job_id = %s LIMIT 1", (first,)).fetchone()[0]
        c.execute("""INSERT INTO privacy_applications (store_id, pattern_id, original_utility, noisy_utility,
                                                       noise_added, epsilon_used) VALUES (%s, %s, 1, 2, 1, 0.5)""",
                  (store_id, ref))
        c.commit()
    second = plan_one(mine_dsn, store_id, window_start="2000-01-01T00:00:00Z")
    run_job(mine_dsn, second)
    with psycopg.connect(mine_dsn) as c:
        rows = c.execute("""SELECT mining_job_id, superseded_at IS NOT NULL, superseded_by_job_id
                              FROM local_patterns WHERE store_id = %s AND mining_job_id = %s""",
                         (store_id, first)).fetchall()
        stats = get_job(c, second).params, c.execute("SELECT stats FROM mining_jobs WHERE id = %s",
                                                       (second,)).fetchone()[0]
    assert rows == [(first, True, second)]
    assert stats[1]["superseded"]["marked_superseded"] == 1 and stats[1]["superseded"]["deleted"] > 0


def test_default_window_is_since_last_successful_mining(mine_dsn):
    t0 = datetime(2026, 2, 1, tzinfo=timezone.utc)
    store_id = make_store(mine_dsn, ROWS[:100], start=t0)
    req = RunRequest.from_params({"store_ids": [str(store_id)], **PARAMS})
    with psycopg.connect(mine_dsn) as c:
        p1 = plan_runs(c, req, run_key="w/1", now=t0 + timedelta(days=10))
        c.commit()
    assert p1.jobs[0].window_start is None and p1.jobs[0].n_transactions == 100
    run_job(mine_dsn, p1.jobs[0].job_id)
    with psycopg.connect(mine_dsn) as c:
        p2 = plan_runs(c, req, run_key="w/2", now=t0 + timedelta(days=11))
        assert p2.jobs == [] and "no transactions since its last successful mining" in p2.skipped[0]["reason"]
        add_transactions(c, store_id, ROWS[100:160], start=t0 + timedelta(days=10, hours=1))
        p3 = plan_runs(c, req, run_key="w/3", now=t0 + timedelta(days=12))
        c.commit()
    assert p3.jobs[0].n_transactions == 60
    assert p3.jobs[0].window_start == (t0 + timedelta(days=10)).isoformat()


def test_plan_is_idempotent_per_run_and_routes_large_stores_to_spark(mine_dsn):
    from include.db.configs import set_config

    store_id = make_store(mine_dsn, ROWS[:30])
    req = RunRequest.from_params({"store_ids": [str(store_id)], **PARAMS})
    with psycopg.connect(mine_dsn) as c:
        a = plan_runs(c, req, run_key="idem/1")
        b = plan_runs(c, req, run_key="idem/1")  # the plan task retried
        assert [j.job_id for j in a.jobs] == [j.job_id for j in b.jobs] and b.jobs[0].created is False
        assert c.execute("SELECT count(*) FROM mining_jobs WHERE store_id = %s", (store_id,)).fetchone()[0] == 1
        old = MiningSettings.load(c).spark_threshold_transactions
        set_config(c, "spark_threshold_transactions", 20)
        try:
            assert plan_runs(c, req, run_key="idem/2").jobs[0].engine_path == "spark"
            forced = RunRequest.from_params({"store_ids": [str(store_id)], **PARAMS, "engine": "local"})
            assert plan_runs(c, forced, run_key="idem/3").jobs[0].engine_path == "local"
        finally:
            set_config(c, "spark_threshold_transactions", old)
        c.rollback()


def test_too_many_patterns_stops_with_a_clear_error_and_keeps_old_patterns(mine_dsn):
    store_id = make_store(mine_dsn, ROWS)
    run_job(mine_dsn, plan_one(mine_dsn, store_id))
    old = as_map(stored(mine_dsn, store_id))
    job_id = plan_one(mine_dsn, store_id, window_start="2000-01-01T00:00:00Z", max_patterns=3)
    with pytest.raises(GuardRailError, match="max_patterns_per_job"):
        run_job(mine_dsn, job_id)
    with psycopg.connect(mine_dsn) as c:
        job = get_job(c, job_id)
    assert job.status == "failed" and "more than 3 patterns" in job.error_message
    assert as_map(stored(mine_dsn, store_id)) == old


def test_memory_budget_stops_the_run(mine_dsn):
    store_id = make_store(mine_dsn, ROWS[:50])
    job_id = plan_one(mine_dsn, store_id, memory_budget_mb=5)  # below an interpreter's size
    with pytest.raises(GuardRailError, match="mining_memory_budget_mb"):
        run_job(mine_dsn, job_id)
    with psycopg.connect(mine_dsn) as c:
        job = get_job(c, job_id)
    assert job.status == "failed" and "above the budget of 5 MB" in job.error_message
    assert job.memory_used_mb > 5


@pytest.mark.parametrize("params, match", [
    ({"min_utility": 0, "max_pattern_length": 0}, "every itemset"),
    ({"min_utility_ratio": 0, "max_pattern_length": 0}, "every itemset"),
    ({"min_utility": 5, "min_utility_ratio": 0.1}, "not both"),
    ({"min_support": 2}, "min_support"),
    ({"store_ids": ["not-a-uuid"]}, "store_ids"),
    ({"window_start": "2026-02-01T00:00:00Z", "window_end": "2026-01-01T00:00:00Z"}, "window_start"),
])
def test_bad_parameters_are_rejected_up_front(params, match):
    with pytest.raises(ParameterError, match=match):
        RunRequest.from_params(params)


def test_resolution_of_defaults_and_platform_maximum():
    cfg = MiningSettings()
    th = resolve_thresholds(RunRequest(), cfg, Decimal("2000"))
    assert th.min_utility == Decimal("20.00") and th.max_pattern_length == 5 and th.min_support == 0
    assert th.max_patterns == 1000000 and th.memory_budget_mb == 4096
    capped = MiningSettings(max_pattern_length=3, min_utility_threshold=Decimal(7))
    assert resolve_thresholds(RunRequest(), capped, Decimal(1)).max_pattern_length == 3
    assert resolve_thresholds(RunRequest(), capped, Decimal(1)).min_utility == 7
    with pytest.raises(ParameterError, match="platform maximum"):
        resolve_thresholds(RunRequest(max_pattern_length=4), capped, Decimal(1))
    with pytest.raises(ParameterError, match="every itemset"):
        resolve_thresholds(RunRequest(max_pattern_length=0), MiningSettings(), Decimal(0))


def test_unknown_store_is_a_parameter_error(mine_dsn):
    req = RunRequest.from_params({"store_ids": [str(uuid.uuid4())]})
    with psycopg.connect(mine_dsn) as c, pytest.raises(ParameterError, match="no store"):
        plan_runs(c, req)


def test_job_progress_is_published_to_redis_and_a_dead_redis_does_not_fail_the_job(mine_dsn, monkeypatch, caplog):
    import json
    import logging
    import os

    from include.search.clients import redis_client
    from include.search.live import mining_progress

    ns = f"t-mine-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PLATFORM_REDIS_NAMESPACE", ns)
    r = redis_client()
    store_id = make_store(mine_dsn, ROWS)
    job_id = plan_one(mine_dsn, store_id)
    try:
        out = run_job(mine_dsn, job_id)
        live = mining_progress(r, job_id, ns=ns).get()
        assert live["phase"] == "completed" and live["store_id"] == str(store_id)
        assert live["engine_path"] == "local" and int(live["n_transactions"]) == len(ROWS)
        assert int(live["patterns_found"]) == out["patterns_found"] > 0
        assert 0 < r.ttl(f"{ns}:progress:mining:{job_id}") <= 24 * 3600
    finally:
        for k in r.scan_iter(f"{ns}:*"):
            r.delete(k)

    # Redis unreachable (a closed port): the job completes; one warning names Redis
    dead = {**json.loads(os.environ["AIRFLOW_CONN_PLATFORM_REDIS"]), "port": 9}
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_REDIS", json.dumps(dead))
    other = make_store(mine_dsn, ROWS)
    job2 = plan_one(mine_dsn, other)
    with caplog.at_level(logging.WARNING, logger="include.search.live"):
        out2 = run_job(mine_dsn, job2)
    assert out2["status"] == "completed" and out2["patterns_found"] == out["patterns_found"]
    warnings = [m for m in caplog.messages if "Redis is unavailable" in m]
    assert len(warnings) == 1 and f"progress:mining:{job2}" in warnings[0]
