"""`airflow dags test` of the three DAGs against the services. Connection platform_postgres and the
bucket variable point at a scratch database and bucket (the retention DAG really deletes old rows);
the backups are of the project's real cluster."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from .test_retention import C1, _store, _tx

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def _dags_test(dag_id: str, dsn: str, bucket: str, conf: dict) -> str:
    u = urlsplit(dsn)
    env = dict(os.environ)
    env["AIRFLOW_CONN_PLATFORM_POSTGRES"] = json.dumps({"conn_type": "postgres", "host": u.hostname, "port": u.port,
                                                        "login": u.username, "password": u.password,
                                                        "schema": u.path.lstrip("/")})
    env["AIRFLOW_VAR_PLATFORM_BUCKET"] = bucket
    p = subprocess.run([AIRFLOW, "dags", "test", "-f", str(ROOT / "dags" / f"{dag_id}.py"), dag_id, "-c",
                        json.dumps(conf)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    finished = [ln for ln in out.splitlines() if "DagRun Finished" in ln and f"dag_id={dag_id}" in ln]
    assert finished and "state=success" in finished[-1], out[-4000:]
    return out


def test_retain_and_archive_dag(db, archive_store):
    with psycopg.connect(db, autocommit=True) as c:
        s = _store(c, "dag store")
        old = [_tx(c, s, C1.transactions - timedelta(days=1 + i), i) for i in range(4)]
    out = _dags_test("retain_and_archive", db, archive_store.bucket, {"as_of": C1.as_of.isoformat()})
    assert "transactions         removed          4 rows" in out
    with psycopg.connect(db, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM transactions WHERE id = ANY(%s::uuid[])", (old,)).fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM activity_logs WHERE action_type = 'retention_run'").fetchone()[0] == 1
    assert any(k.endswith(".parquet") for k in archive_store.list("archive/transactions/"))


def test_backup_database_and_restore_drill_dags(db, archive_store):
    # the DR repository's backup and drill are covered by test_backups (they double this test's time)
    _dags_test("backup_database", db, archive_store.bucket, {"type": "incr", "dr": "never"})
    _dags_test("restore_drill", db, archive_store.bucket, {"dr": False})
    with psycopg.connect(db, autocommit=True) as c:
        m = dict(c.execute("""SELECT metric_name, count(*) FROM performance_metrics WHERE metric_type = 'backup'
                              GROUP BY 1""").fetchall())
        ok = [r[0] for r in c.execute("SELECT metric_value FROM performance_metrics"
                                      " WHERE metric_name = 'restore_drill.ok'")]
    assert m["backup.size_bytes"] == 1 and m["backup.newest_age_hours"] == 1
    assert ok == [1]
