"""`airflow dags test mine_store_patterns` against the real services: the DAG plans, maps over the stores
(local path) and leaves completed jobs and their patterns (in this module's temporary database)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.mine.conftest import make_store, synthetic_rows

ROOT = Path(__file__).resolve().parents[2]


def test_airflow_dags_test_mines_the_selected_stores(mine_dsn):
    stores = [make_store(mine_dsn, synthetic_rows(i, 150)) for i in (4, 5)]
    d = conninfo_to_dict(mine_dsn)
    env = dict(os.environ)
    env["AIRFLOW_CONN_PLATFORM_POSTGRES"] = json.dumps({
        "conn_type": "postgres", "host": d.get("host") or "127.0.0.1", "port": int(d.get("port") or 5432),
        "login": d.get("user"), "password": d.get("password"), "schema": d["dbname"]})
    conf = {"store_ids": [str(s) for s in stores], "min_utility_ratio": 0.01, "max_pattern_length": 3}
    airflow = str(Path(sys.executable).parent / "airflow")
    out = subprocess.run([airflow, "dags", "test", "mine_store_patterns", "-c", json.dumps(conf)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=540)
    log = out.stdout + out.stderr
    Path(os.environ.get("MINE_DAG_LOG", "/dev/null")).write_text(log)
    assert out.returncode == 0, log[-4000:]
    with psycopg.connect(mine_dsn) as c:
        rows = c.execute("""SELECT store_id, status, patterns_found, engine_path, params->>'dag_id'
                              FROM mining_jobs WHERE store_id = ANY(%s)""", (stores,)).fetchall()
        n = {s: c.execute("SELECT count(*) FROM local_patterns WHERE store_id = %s", (s,)).fetchone()[0]
             for s in stores}
    assert sorted(r[0] for r in rows) == sorted(stores)
    for store_id, status, found, path, dag_id in rows:
        assert (status, path, dag_id) == ("completed", "local", "mine_store_patterns")
        assert found == n[store_id] > 0
    assert "Marking run <DagRun mine_store_patterns" in log and "successful" in log
