"""Retention rules of spec 4.1 against the real PostgreSQL and S3 API server, by time travel: rows are
written around each boundary, then runs with ``as_of`` before and after the boundary must archive and
remove exactly the rows the rules name, restore them exactly, change nothing when repeated, and survive
a crash between archive and delete."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from include.retain import archive as ar
from include.retain.policy import RetentionPolicy, parse_as_of
from include.retain.run import plan, run

ROOT = Path(__file__).resolve().parents[2]
US = timedelta(microseconds=1)
TODAY = datetime.now(timezone.utc).date()
AS_OF1 = TODAY - timedelta(days=40)
AS_OF2 = TODAY
POLICY = RetentionPolicy()
C1, C2 = POLICY.cutoffs(AS_OF1), POLICY.cutoffs(AS_OF2)

# values that a float or a fixed-scale decimal would change: they must come back digit for digit
QUANTITIES = ["1.50", "2.000", "0.000001"]
UTILITIES = ["0.3333333333333333333333333333", "10", "-0.10"]
TOTAL = "12345678901234567890.123456789012345000"


def _month_start(t: datetime) -> datetime:
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _prev_month(t: datetime) -> datetime:
    return _month_start(_month_start(t) - timedelta(days=1))


def _store(conn, name: str) -> str:
    return str(conn.execute("INSERT INTO stores (name) VALUES (%s) RETURNING id", (name,)).fetchone()[0])


def _tx(conn, store: str, when: datetime, i: int = 0) -> str:
    tid = str(uuid.uuid4())
    conn.execute("""INSERT INTO transactions (id, store_id, transaction_date, items, quantities, unit_utilities,
                                              total_utility, created_at)
                    VALUES (%s, %s, %s, %s, %s::numeric[], %s::numeric[], %s::numeric, %s)""",
                 (tid, store, when, [f"item-{i}", "milk, 1 l", 'quote"d'], QUANTITIES, UTILITIES, TOTAL, when))
    return tid


def _log(conn, store: str | None, when: datetime, i: int = 0) -> str:
    lid = str(uuid.uuid4())
    conn.execute("""INSERT INTO activity_logs (id, store_id, action_type, action_description, resource_type,
                                               resource_id, ip_address, user_agent, created_at, additional_data)
                    VALUES (%s, %s, 'test_event', %s, 'thing', %s, '10.1.2.3/32', 'pytest', %s, %s)""",
                 (lid, store, f"event {i} \\ tab\t newline\n", str(uuid.uuid4()), when,
                  json.dumps({"n": i, "amount": 1.10, "nested": {"b": [1, 2.50]}})))
    return lid


def _metric(conn, when: datetime, value: str) -> None:
    conn.execute("""INSERT INTO performance_metrics (metric_type, metric_name, metric_value, recorded_at)
                    VALUES ('test', 'latency', %s::numeric, %s)""", (value, when))


def _rows_text(conn, table: str, ids: list[str]) -> dict[str, str]:
    """id -> the whole row as PostgreSQL prints it (every column, every digit)."""
    rows = conn.execute(f"SELECT id::text, t::text FROM {table} t WHERE id = ANY(%s::uuid[])", (ids,)).fetchall()
    return dict(rows)


def _ids(conn, table: str, ids: list[str]) -> set[str]:
    return {r[0] for r in conn.execute(f"SELECT id::text FROM {table} WHERE id = ANY(%s::uuid[])", (ids,))}


def _counts(conn) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("transactions", "activity_logs", "performance_metrics", "performance_metrics_rollup",
                      "local_patterns", "global_patterns")}


def _seed_world(dsn: str) -> dict:
    """Rows on both sides of every boundary of both runs (AS_OF1, AS_OF2)."""
    w: dict = {"tx": {}, "log": {}}
    with psycopg.connect(dsn, autocommit=True) as c:
        a, b = _store(c, "retain A"), _store(c, "retain B")
        w["stores"] = (a, b)
        # transactions: two whole months before C1 for A, one for B, and the edges
        tx_old = [_tx(c, a, C1.transactions - timedelta(days=3 + i, hours=i), i) for i in range(20)]
        tx_old += [_tx(c, a, C1.transactions - timedelta(days=45 + i), i) for i in range(10)]
        tx_old += [_tx(c, b, C1.transactions - timedelta(days=10 + i, minutes=7 * i), i) for i in range(10)]
        tx_old.append(_tx(c, a, C1.transactions - US, 99))                   # last archived by run 1
        tx_edge1 = _tx(c, a, C1.transactions, 100)                           # first kept by run 1
        tx_mid = [_tx(c, b, C1.transactions + timedelta(days=5 + i), i) for i in range(5)]
        tx_edge2 = _tx(c, b, C2.transactions - US, 101)                      # last archived by run 2
        tx_keep = [_tx(c, b, C2.transactions, 102)] + [_tx(c, a, datetime.now(timezone.utc) - timedelta(days=1), i)
                                                        for i in range(5)]
        w["tx"] = {"old": tx_old, "edge1": tx_edge1, "mid": tx_mid, "edge2": tx_edge2, "keep": tx_keep}

        # activity_logs: monthly partitions from two months before C1's month; older rows fall into DEFAULT
        m0 = _prev_month(C1.activity_logs)                                    # wholly before C1: dropped
        c.execute("SELECT timeseries_create_partitions('activity_logs', %s, %s)",
                  (_prev_month(m0), datetime.now(timezone.utc) + timedelta(days=62)))
        log_old = [_log(c, a if i % 3 else None, m0 + timedelta(days=i % 27, hours=i), i) for i in range(30)]
        log_old += [_log(c, b, C1.activity_logs - timedelta(days=200 + i), i) for i in range(4)]   # DEFAULT
        partial = [t for t in (_month_start(C1.activity_logs) + timedelta(hours=5 * i) for i in range(12))
                   if t < C1.activity_logs]
        log_old += [_log(c, a, t, i) for i, t in enumerate(partial)]
        log_old.append(_log(c, None, C1.activity_logs - US, 99))
        log_edge1 = _log(c, a, C1.activity_logs, 100)
        log_edge2 = _log(c, b, C2.activity_logs - US, 101)
        log_keep = [_log(c, b, C2.activity_logs, 102)]
        w["log"] = {"old": log_old, "edge1": log_edge1, "edge2": log_edge2, "keep": log_keep,
                    "m0_partition": f"activity_logs_p{m0:%Y%m}"}

        # performance_metrics: detail around C1/C2's 6 months, one whole month before (partition dropped)
        pm0 = _prev_month(C1.metrics_detail)
        c.execute("SELECT timeseries_create_partitions('performance_metrics', %s, %s)",
                  (pm0, datetime.now(timezone.utc) + timedelta(days=62)))
        pm_old = [pm0 + timedelta(hours=7 * i) for i in range(60)]
        pm_old = [t for t in pm_old if t < C1.metrics_detail]
        pm_old += [C1.metrics_detail - timedelta(hours=i + 1) for i in range(3)] + [C1.metrics_detail - US]
        for i, t in enumerate(pm_old):
            _metric(c, t, f"{i}.25")
        _metric(c, C1.metrics_detail, "7.5")
        _metric(c, C2.metrics_detail - US, "8.5")
        _metric(c, C2.metrics_detail, "9.5")
        w["pm"] = {"old": len(pm_old), "old_sum": sum(float(f"{i}.25") for i in range(len(pm_old))),
                   "partition": f"performance_metrics_p{pm0:%Y%m}"}
        # rollup rows around the 2-year rollup boundary
        for bstart in (C1.metrics_rollup - timedelta(hours=1), C1.metrics_rollup):
            c.execute("""INSERT INTO performance_metrics_rollup (bucket_width, bucket_start, metric_type, metric_name,
                                                                 sample_count, sum_value, min_value, max_value)
                         VALUES ('hour', %s, 'test', 'old_rollup', 2, 3.0, 1.0, 2.0)""", (bstart,))
    return w


def test_policy_cutoffs_and_as_of_parsing():
    p = RetentionPolicy.from_configs({"retention_transactions_days": 730})
    c = p.cutoffs(date(2026, 3, 1))
    assert c.transactions == datetime(2024, 3, 1, tzinfo=timezone.utc)
    assert c.activity_logs == datetime(2025, 3, 1, tzinfo=timezone.utc)
    assert c.metrics_detail == datetime(2026, 3, 1, tzinfo=timezone.utc) - timedelta(days=183)
    assert parse_as_of("2026-03-01") == date(2026, 3, 1)
    assert parse_as_of(None) == datetime.now(timezone.utc).date()
    with pytest.raises(ValueError, match="as_of must be a date"):
        parse_as_of("yesterday")
    with pytest.raises(ValueError, match="whole number of days"):
        RetentionPolicy.from_configs({"retention_transactions_days": "1.5"})


def test_time_travel_archives_exactly_restores_exactly_and_repeats_nothing(db, archive_store):
    w = _seed_world(db)
    a, b = w["stores"]
    tx, lg = w["tx"], w["log"]
    all_tx = tx["old"] + [tx["edge1"]] + tx["mid"] + [tx["edge2"]] + tx["keep"]
    all_log = lg["old"] + [lg["edge1"], lg["edge2"]] + lg["keep"]
    with psycopg.connect(db, autocommit=True) as c:
        originals_tx = _rows_text(c, "transactions", all_tx)
        originals_log = _rows_text(c, "activity_logs", all_log)
        before = _counts(c)

    # dry run: exact counts per table, nothing touched
    p = plan(db, AS_OF1)
    byt = {t.table: t for t in p.tables}
    assert p.dry_run and p.backend == "native"
    assert byt["transactions"].rows == len(tx["old"])
    assert byt["activity_logs"].rows == len(lg["old"])
    assert lg["m0_partition"] in byt["activity_logs"].details["partitions_to_drop"]
    assert byt["performance_metrics"].rows == w["pm"]["old"]
    assert byt["performance_metrics"].details["rollup_rows_to_purge"] == 1
    with psycopg.connect(db, autocommit=True) as c:
        assert _counts(c) == before
    assert archive_store.list("archive/") == []

    # run 1 (as_of1): exactly the rows before each cutoff
    r1 = run(db, archive_store, AS_OF1)
    rep = {t.table: t for t in r1.tables}
    assert rep["transactions"].rows == len(tx["old"]) and rep["transactions"].bytes > 0
    assert rep["activity_logs"].rows == len(lg["old"])
    assert lg["m0_partition"] in rep["activity_logs"].details["partitions_dropped"]
    assert rep["performance_metrics"].rows == w["pm"]["old"]
    assert w["pm"]["partition"] in rep["performance_metrics"].details["partitions_dropped"]
    assert rep["performance_metrics"].details["rollup_rows_purged"] == 1
    with psycopg.connect(db, autocommit=True) as c:
        assert _ids(c, "transactions", all_tx) == set(all_tx) - set(tx["old"])
        assert _ids(c, "activity_logs", all_log) == set(all_log) - set(lg["old"])
        assert c.execute("SELECT to_regclass(%s)", (lg["m0_partition"],)).fetchone()[0] is None
        assert c.execute("SELECT count(*) FROM performance_metrics WHERE metric_type = 'test' AND recorded_at < %s",
                         (C1.metrics_detail,)).fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM performance_metrics WHERE metric_type = 'test'").fetchone()[0] == 3
        # the removed detail lives on in the daily rollup: same count and sum
        n, s = c.execute("""SELECT sum(sample_count), sum(sum_value) FROM performance_metrics_rollup
                             WHERE bucket_width = 'day' AND metric_name = 'latency' AND bucket_start < %s""",
                         (C1.metrics_detail,)).fetchone()
        assert (n, float(s)) == (w["pm"]["old"], w["pm"]["old_sum"])
        assert c.execute("SELECT count(*) FROM performance_metrics_rollup WHERE metric_name = 'old_rollup'"
                         ).fetchone()[0] == 1
        # recorded: counts and bytes per table, one activity entry
        names = {r[0] for r in c.execute("SELECT metric_name FROM performance_metrics WHERE metric_type = 'retention'"
                                         " AND metadata->>'run_id' = %s", (r1.run_id,))}
        assert {"transactions.rows", "transactions.bytes", "activity_logs.rows", "activity_logs.bytes",
                "performance_metrics.rows", "local_patterns.rows"} <= names
        assert c.execute("SELECT count(*) FROM activity_logs WHERE action_type = 'retention_run' AND resource_id = %s",
                         (r1.run_id,)).fetchone()[0] == 1
        m = c.execute("SELECT status, row_count, manifest_key FROM archive_manifests WHERE table_name = 'transactions'"
                      ).fetchall()
        assert [(x[0], x[1]) for x in m] == [("committed", len(tx["old"]))]
    # the manifest in the bucket names every file with its sha256, and the files are there
    doc = json.loads(archive_store.get(m[0][2]))
    assert doc["row_count"] == len(tx["old"]) and doc["table"] == "transactions"
    for f in doc["files"]:
        assert ar.pqx.sha256(archive_store.get(f["key"])) == f["sha256"]
        assert f["key"].startswith(f"archive/transactions/store_id={f['store_id']}/year={f['year']:04d}/"
                                   f"month={f['month']:02d}/")
    assert {f["store_id"] for f in doc["files"]} == {a, b}

    # a second run with the same as_of changes nothing
    keys_before = sorted(archive_store.list("archive/"))
    with psycopg.connect(db, autocommit=True) as c:
        counts_before = _counts(c)
    r1b = run(db, archive_store, AS_OF1, record=False)
    assert {t.table: t.rows for t in r1b.tables if t.table != "global_patterns"} == {
        "transactions": 0, "activity_logs": 0, "performance_metrics": 0, "local_patterns": 0}
    assert sorted(archive_store.list("archive/")) == keys_before
    with psycopg.connect(db, autocommit=True) as c:
        assert _counts(c) == counts_before

    # restore-archive: into a staging table (store A), exact to the last digit
    lo = C1.transactions - timedelta(days=400)
    ra = ar.restore_archive(db, archive_store, "transactions", a, lo, C1.transactions, staging=True)
    a_old = [i for i in tx["old"] if originals_tx[i].split(",")[1] == a]
    assert ra.rows_restored == len(a_old) and ra.target.startswith("retain_staging.")
    with psycopg.connect(db, autocommit=True) as c:
        staged = dict(c.execute(f"SELECT id::text, t::text FROM {ra.target} t").fetchall())
        assert staged == {i: originals_tx[i] for i in a_old}
        assert c.execute(f"SELECT quantities::text, unit_utilities::text, total_utility::text FROM {ra.target} LIMIT 1"
                         ).fetchone() == ("{1.50,2.000,0.000001}", "{0.3333333333333333333333333333,10,-0.10}", TOTAL)
    # activity_logs (rows without a store), back into the live table
    rl = ar.restore_archive(db, archive_store, "activity_logs", None, C1.activity_logs - timedelta(days=400),
                            C1.activity_logs)
    none_old = [i for i in lg["old"] if originals_log[i].split(",")[2] == ""]
    assert rl.rows_restored == len(none_old) > 0
    with psycopg.connect(db, autocommit=True) as c:
        assert _rows_text(c, "activity_logs", none_old) == {i: originals_log[i] for i in none_old}
    # store B back into the live table; a second restore finds them present
    rb = ar.restore_archive(db, archive_store, "transactions", b, lo, C1.transactions)
    b_old = [i for i in tx["old"] if originals_tx[i].split(",")[1] == b]
    assert rb.rows_restored == len(b_old)
    assert ar.restore_archive(db, archive_store, "transactions", b, lo, C1.transactions).rows_already_present == len(b_old)
    with psycopg.connect(db, autocommit=True) as c:
        assert _rows_text(c, "transactions", b_old) == {i: originals_tx[i] for i in b_old}

    # run 2 (as_of2, 40 days later): the restored rows leave again, plus the rows between the cutoffs
    r2 = run(db, archive_store, AS_OF2)
    rep2 = {t.table: t for t in r2.tables}
    assert rep2["transactions"].rows == len(b_old) + 1 + len(tx["mid"]) + 1
    with psycopg.connect(db, autocommit=True) as c:
        assert _ids(c, "transactions", all_tx) == set(tx["keep"])
        assert _ids(c, "activity_logs", all_log) == set(lg["keep"])
        assert c.execute("SELECT count(*) FROM performance_metrics WHERE metric_type = 'test'").fetchone()[0] == 1
        assert c.execute("SELECT count(*) FROM performance_metrics_rollup WHERE metric_name = 'old_rollup'"
                         ).fetchone()[0] == 0
    assert {t.table: t.rows for t in run(db, archive_store, AS_OF2, record=False).tables
            if t.table != "global_patterns"} == {"transactions": 0, "activity_logs": 0, "performance_metrics": 0,
                                                 "local_patterns": 0}

    # every archived transaction comes back once (store B's were archived twice: deduplicated), exactly
    out = {}
    for s in (a, b):
        r = ar.restore_archive(db, archive_store, "transactions", s, lo, C2.transactions, staging=True)
        with psycopg.connect(db, autocommit=True) as c:
            out.update(dict(c.execute(f"SELECT id::text, t::text FROM {r.target} t").fetchall()))
    archived = set(all_tx) - set(tx["keep"])
    assert out == {i: originals_tx[i] for i in archived}


def _run_cli(dsn: str, bucket: str, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    from urllib.parse import urlsplit

    u = urlsplit(dsn)
    env = dict(os.environ)
    env["AIRFLOW_CONN_PLATFORM_POSTGRES"] = json.dumps({"conn_type": "postgres", "host": u.hostname, "port": u.port,
                                                        "login": u.username, "password": u.password,
                                                        "schema": u.path.lstrip("/")})
    env["AIRFLOW_VAR_PLATFORM_BUCKET"] = bucket
    env.pop("RETAIN_CRASH_AT", None)
    if crash_at:
        env["RETAIN_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "include.retain", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_crash_between_archive_and_delete_loses_and_duplicates_nothing(db, archive_store):
    with psycopg.connect(db, autocommit=True) as c:
        s = _store(c, "crash store")
        old = [_tx(c, s, C1.transactions - timedelta(days=1 + i, hours=i), i) for i in range(25)]
        keep = [_tx(c, s, C1.transactions + timedelta(days=1), 99)]
        originals = _rows_text(c, "transactions", old + keep)
    prefix = "archive/transactions/"

    # killed after the archive was written and read back, before the delete
    p = _run_cli(db, archive_store.bucket, "run", "--as-of", AS_OF1.isoformat(), crash_at="after_verify")
    assert p.returncode == 70, p.stderr[-2000:]
    with psycopg.connect(db, autocommit=True) as c:
        assert _rows_text(c, "transactions", old + keep) == originals          # both copies exist
        m1 = c.execute("SELECT id, status FROM archive_manifests").fetchall()
        assert [x[1] for x in m1] == ["written"]
    first_files = [k for k in archive_store.list(prefix) if str(m1[0][0]) in k]
    assert first_files

    # killed inside the delete transaction, after the rows were deleted but before COMMIT
    p = _run_cli(db, archive_store.bucket, "run", "--as-of", AS_OF1.isoformat(), crash_at="before_commit")
    assert p.returncode == 70, p.stderr[-2000:]
    with psycopg.connect(db, autocommit=True) as c:
        assert _rows_text(c, "transactions", old + keep) == originals
        states = dict(c.execute("SELECT id::text, status FROM archive_manifests").fetchall())
        assert states[str(m1[0][0])] == "abandoned" and sorted(states.values()) == ["abandoned", "written"]
    assert not [k for k in archive_store.list(prefix) if str(m1[0][0]) in k]   # abandoned files removed

    # the next run recovers: one committed manifest, every row archived once, rows gone from the table
    p = _run_cli(db, archive_store.bucket, "run", "--as-of", AS_OF1.isoformat())
    assert p.returncode == 0, p.stderr[-2000:]
    with psycopg.connect(db, autocommit=True) as c:
        assert _ids(c, "transactions", old + keep) == set(keep)
        committed = c.execute("SELECT id::text FROM archive_manifests WHERE status = 'committed'").fetchall()
        assert len(committed) == 1
        assert sorted(states.values()) == ["abandoned", "written"]
        assert c.execute("SELECT count(*) FROM archive_manifests WHERE status = 'abandoned'").fetchone()[0] == 2
    objects = archive_store.list(prefix)
    assert objects and all(committed[0][0] in k for k in objects)            # only the committed run's files
    ids = []
    for k in objects:
        if k.endswith(".parquet"):
            ids += ar.pqx.read_parquet_bytes(archive_store.get(k)).column("id").to_pylist()
    assert sorted(ids) == sorted(old)                                         # each row exactly once
    # and the restore command gives them back exactly
    p = _run_cli(db, archive_store.bucket, "restore-archive", "--table", "transactions", "--store", s,
                 "--from", (C1.transactions - timedelta(days=60)).date().isoformat(),
                 "--to", C1.transactions.date().isoformat())
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["rows_restored"] == len(old)
    with psycopg.connect(db, autocommit=True) as c:
        assert _rows_text(c, "transactions", old + keep) == originals


def test_cli_plan_touches_nothing(db, archive_store):
    with psycopg.connect(db, autocommit=True) as c:
        s = _store(c, "plan store")
        for i in range(3):
            _tx(c, s, C1.transactions - timedelta(days=i + 1), i)
        before = _counts(c)
    p = _run_cli(db, archive_store.bucket, "run", "--dry-run", "--as-of", AS_OF1.isoformat())
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["dry_run"] is True
    assert {t["table"]: t["rows"] for t in out["tables"]}["transactions"] == 3
    with psycopg.connect(db, autocommit=True) as c:
        assert _counts(c) == before
        assert c.execute("SELECT count(*) FROM archive_manifests").fetchone()[0] == 0
    p = _run_cli(db, archive_store.bucket, "restore-archive", "--table", "transactions", "--store", s,
                 "--from", "2020-02-30", "--to", "2020-03-01")
    assert p.returncode != 0 and "--from must be a date" in p.stderr


def _job(c, store: str, status: str, completed: datetime | None, started: datetime) -> str:
    return str(c.execute("""INSERT INTO mining_jobs (store_id, status, min_utility, min_support, started_at,
                                                     completed_at) VALUES (%s, %s, 10, 0.1, %s, %s) RETURNING id""",
                         (store, status, started, completed)).fetchone()[0])


def _patterns(c, job: str, store: str, created: datetime, n: int = 3) -> list[str]:
    return [str(c.execute("""INSERT INTO local_patterns (mining_job_id, store_id, pattern_items, utility, support,
                                                         confidence, pattern_length, created_at)
                             VALUES (%s, %s, %s, 12.50, 0.2, 0.9, 2, %s) RETURNING id""",
                          (job, store, [f"a{i}", f"b{i}"], created)).fetchone()[0]) for i in range(n)]


def test_local_patterns_superseded_or_expired_go_global_patterns_stay(db, archive_store):
    t1 = C1.as_of_ts
    with psycopg.connect(db, autocommit=True) as c:
        sa, sb, sc, sd = (_store(c, f"patterns {x}") for x in "ABCD")
        # A: an older job superseded by a newer successful one (before as_of1)
        j1 = _job(c, sa, "completed", t1 - timedelta(days=100), t1 - timedelta(days=100, hours=1))
        p1 = _patterns(c, j1, sa, t1 - timedelta(days=100))
        j2 = _job(c, sa, "completed", t1 - timedelta(days=10), t1 - timedelta(days=10, hours=1))
        p2 = _patterns(c, j2, sa, t1 - timedelta(days=10))
        # a superseded pattern still referenced by a privacy release: kept until its year is up
        j0 = _job(c, sa, "completed", t1 - timedelta(days=340), t1 - timedelta(days=340, hours=1))
        p1_ref = _patterns(c, j0, sa, t1 - timedelta(days=340), 1)
        c.execute("""INSERT INTO privacy_applications (store_id, pattern_id, original_utility, noisy_utility,
                                                       noise_added, epsilon_used)
                     VALUES (%s, %s, 12.5, 13.0, 0.5, 1.0)""", (sa, p1_ref[0]))
        # B: the newer mining failed -> kept; a successful one after as_of1 supersedes only at as_of2
        j3 = _job(c, sb, "completed", t1 - timedelta(days=50), t1 - timedelta(days=50, hours=1))
        p3 = _patterns(c, j3, sb, t1 - timedelta(days=50))
        _job(c, sb, "failed", None, t1 - timedelta(days=5))
        _job(c, sb, "running", None, t1 - timedelta(days=4))
        _job(c, sb, "completed", t1 + timedelta(days=20), t1 + timedelta(days=20) - timedelta(hours=1))
        # C: one job, older than a year at as_of1; D: 364 days at as_of1, past a year at as_of2
        j6 = _job(c, sc, "completed", t1 - timedelta(days=400), t1 - timedelta(days=400, hours=1))
        p6 = _patterns(c, j6, sc, t1 - timedelta(days=400))
        j7 = _job(c, sd, "completed", t1 - timedelta(days=364), t1 - timedelta(days=364, hours=1))
        p7 = _patterns(c, j7, sd, t1 - timedelta(days=364))
        # global patterns: three rounds (the third failed), all from long ago
        rounds = []
        for n, status in ((1, "completed"), (2, "completed"), (3, "failed")):
            rid = str(c.execute("INSERT INTO federated_rounds (round_number, status, completed_at) VALUES (%s, %s, %s)"
                                " RETURNING id", (n, status, t1 - timedelta(days=1000 - n))).fetchone()[0])
            rounds.append(rid)
            for i in range(4):
                c.execute("""INSERT INTO global_patterns (round_id, pattern_items, aggregated_utility, global_support,
                                                          contributing_stores, client_coverage_percent, created_at)
                             VALUES (%s, %s, %s, 0.5, 3, 60, %s)""",
                          (rid, [f"x{i}", f"y{n}"], 100 + i, t1 - timedelta(days=1000 - n)))
        gp_before = dict(c.execute("SELECT id::text, g::text FROM global_patterns g").fetchall())
    all_p = p1 + p2 + p1_ref + p3 + p6 + p7

    p = plan(db, AS_OF1)
    lp = {t.table: t for t in p.tables}["local_patterns"]
    assert (lp.rows, lp.details) == (len(p1) + len(p6), {"expired": len(p6), "superseded": len(p1)})
    r1 = run(db, archive_store, AS_OF1)
    assert {t.table: t.rows for t in r1.tables}["local_patterns"] == len(p1) + len(p6)
    with psycopg.connect(db, autocommit=True) as c:
        assert _ids(c, "local_patterns", all_p) == set(p2 + p1_ref + p3 + p7)

    r2 = run(db, archive_store, AS_OF2)
    rep2 = {t.table: t for t in r2.tables}["local_patterns"]
    # as_of2: B's newer successful mining supersedes p3; p7 and the referenced p1_ref are past a year
    assert rep2.rows == len(p3) + len(p7) + len(p1_ref)
    assert rep2.details["privacy_applications_unlinked"] == 1
    with psycopg.connect(db, autocommit=True) as c:
        assert _ids(c, "local_patterns", all_p) == set(p2)
        assert c.execute("SELECT count(*) FROM privacy_applications WHERE store_id = %s AND pattern_id IS NULL",
                         (sa,)).fetchone()[0] == 1
        # every round's global patterns survive; the latest completed version is round 2
        assert dict(c.execute("SELECT id::text, g::text FROM global_patterns g").fetchall()) == gp_before
        assert {r[0] for r in c.execute("SELECT round_id::text FROM global_patterns_latest")} == {rounds[1]}
        assert [r[0] for r in c.execute("SELECT version FROM global_patterns_versions ORDER BY 1")] == [1, 2, 3]
    gp = {t.table: t for t in r2.tables}["global_patterns"]
    assert gp.details["kept"] == 12 and gp.details["versions"] == 3 and gp.details["latest_version"] == 2
