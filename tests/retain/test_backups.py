"""pgBackRest against the real cluster and the TLS S3 API server (service backup-s3): full and incremental
backups, a point-in-time restore verified by the drill on a spare port, and a restore from the disaster-
recovery repository alone. Marker rows live in a scratch database of the same cluster."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from include.retain import drill as dr
from include.retain import jobs
from include.retain import pgbackrest as pb


@pytest.fixture(scope="module")
def pgbr() -> pb.PgBackRest:
    return pb.PgBackRest(pb.BackupSettings.from_env())


def _batch(dsn: str, name: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO drill_marks (batch, n) SELECT %s, g FROM generate_series(1, %s) g", (name, n))


def _batches(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT batch, count(*) FROM drill_marks GROUP BY batch").fetchall())


def test_full_incremental_pitr_drill_and_restore_from_dr_alone(db, pgbr, tmp_path):
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("CREATE TABLE drill_marks (id bigserial PRIMARY KEY, batch text NOT NULL, n int NOT NULL,"
                  " written_at timestamptz NOT NULL DEFAULT clock_timestamp())")
    tables = ("drill_marks", "transactions", "activity_logs")
    sizes = {"b1": 100, "b2": 10, "b3": 1, "b4": 5, "b5": 7, "b6": 3}

    _batch(db, "b1", sizes["b1"])
    full = jobs.backup(pgbr, db, repo=1, type="full", annotations={"kind": "test"})
    assert full["type"] == "full" and full["size_bytes"] > 0 and full["repo"] == 1
    _batch(db, "b2", sizes["b2"])
    incr = jobs.backup(pgbr, db, repo=1, type="incr")
    assert incr["type"] == "incr" and incr["repo_delta_bytes"] < full["repo_size_bytes"]
    # pgBackRest records a backup's stop time in whole seconds (rounded up): a restore target taken
    # within the same second would precede it. Real drills target points hours apart.
    time.sleep(1.2)
    _batch(db, "b3", sizes["b3"])
    p1 = dr.record_restore_point(db, tables=tables, label="test p1")
    _batch(db, "b4", sizes["b4"])
    dr_full = jobs.backup(pgbr, db, repo=2, type="full", annotations={"kind": "monthly"})
    assert dr_full["type"] == "full" and dr_full["repo"] == 2
    time.sleep(1.2)  # see above: whole-second stop time
    _batch(db, "b5", sizes["b5"])
    p2 = dr.record_restore_point(db, tables=tables, label="test p2")
    _batch(db, "b6", sizes["b6"])
    pgbr.check()  # the WAL with b4..b6 is in both repositories: the restores must stop before it

    # encrypted at rest: the repositories say so
    info = pgbr.info()
    assert info[0]["cipher"] == "aes-256-cbc"
    assert {r["key"]: r["cipher"] for r in info[0]["repo"]} == {1: "aes-256-cbc", 2: "aes-256-cbc"}

    # PITR from repo1 (full + incr + WAL) to p1: b1..b3 present, b4..b6 absent
    r1 = dr.restore_drill(pgbr, p1, repo=1, tables=tables, inspect=_batches)
    assert r1.ok and r1.restored == p1.table_counts
    assert r1.inspection == {"b1": 100, "b2": 10, "b3": 1}
    assert any("recovery stopping before commit" in ln for ln in r1.recovery_log), r1.recovery_log
    assert r1.port != pgbr.s.pg1_port

    # disaster recovery: a configuration that knows repo2 only, restored to p2: b1..b5, not b6
    only = Path(pgbr.config_copy(str(tmp_path / "dr.conf"), only_repo=2))
    text = only.read_text()
    assert "repo2-s3-bucket=" in text and "repo1-" not in text
    r2 = dr.restore_drill(pgbr, p2, repo=2, repo_only=True, tables=tables, inspect=_batches)
    assert r2.ok and r2.inspection == {k: sizes[k] for k in ("b1", "b2", "b3", "b4", "b5")}

    # a target the DR repository cannot reach (before its only full backup) fails cleanly
    if pb.newest_backup(pgbr.info(2), 2)["label"] == dr_full["label"] and len(pb.backups(pgbr.info(2), 2)) == 1:
        with pytest.raises(pb.BackupError, match="unable to find backup set"):
            dr.restore_drill(pgbr, p1, repo=2, repo_only=True, tables=tables)

    # the freshness check: fine now, loud 27 hours later
    assert jobs.freshness(pgbr, db, repo=1)["label"] == incr["label"]
    with pytest.raises(pb.BackupTooOld, match="h old, the limit is 26 h"):
        jobs.freshness(pgbr, db, repo=1, now=datetime.now(timezone.utc) + timedelta(hours=27))

    # sizes and durations went to performance_metrics
    with psycopg.connect(db, autocommit=True) as c:
        got = dict(c.execute("""SELECT metric_name, count(*) FROM performance_metrics WHERE metric_type = 'backup'
                                GROUP BY 1""").fetchall())
    assert got["backup.size_bytes"] == 3 and got["backup.duration_seconds"] == 3
    assert got["backup.newest_age_hours"] == 2


def test_freshness_and_schedule_rules():
    now = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)

    def entry(label, stop_h_ago, error=False, repo=1):
        stop = (now - timedelta(hours=stop_h_ago)).timestamp()
        return {"label": label, "type": "incr", "error": error, "database": {"repo-key": repo},
                "timestamp": {"start": stop - 60, "stop": stop},
                "info": {"size": 1, "delta": 1, "repository": {"size": 1, "delta": 1}}}

    info = [{"name": "platform", "backup": [entry("old", 30), entry("bad", 1, error=True), entry("dr", 1, repo=2)]}]
    with pytest.raises(pb.BackupTooOld, match="30.0 h old"):
        pb.check_freshness(info, repo=1, now=now)         # an errored backup does not count
    assert pb.check_freshness(info, repo=2, now=now)["label"] == "dr"
    with pytest.raises(pb.BackupTooOld, match="no good backup"):
        pb.check_freshness([{"name": "platform", "backup": [], "status": {"message": "no valid backups"}}], now=now)
    assert pb.scheduled_type(datetime(2026, 11, 29)) == "full"     # a Sunday
    assert pb.scheduled_type(datetime(2026, 11, 30)) == "incr"
    assert pb.dr_due(datetime(2026, 12, 1)) and not pb.dr_due(datetime(2026, 12, 2))
