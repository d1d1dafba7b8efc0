"""DAG `ingest_transaction_files`: it parses, is wired as documented, and runs end to end
(`dag.test()`) against the services, with `platform_postgres` pointed at the test database."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg
import pytest

from tests.ingest.conftest import H

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "ingest_transaction_files.py"


@pytest.fixture(scope="module")
def dag():
    sys.path.insert(0, str(ROOT / "dags"))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags["ingest_transaction_files"]


def test_structure(dag):
    assert set(dag.task_dict) == {"choose", "wait_for_files", "discover", "ingest", "loaded_stores",
                                  "publish"}
    sensor = dag.task_dict["wait_for_files"]
    from importlib.util import find_spec

    assert type(sensor).__name__ == "S3KeySensor" and sensor.soft_fail
    # deferrable when the triggerer can run the S3 trigger (aiobotocore), reschedule otherwise
    assert sensor.deferrable == (find_spec("aiobotocore") is not None)
    assert sensor.deferrable or sensor.mode == "reschedule"
    assert dag.task_dict["ingest"].pool == "ingestion"
    assert [o.name for o in dag.task_dict["publish"].outlets] == ["store_transactions"]
    assert dag.params["max_reject_share"] == 0.05 and dag.params["file"] == ""


def test_parse_imports_nothing_heavy():
    # Airflow itself may load some of these at start-up (e.g. the Elasticsearch task-log handler
    # pulls in numpy): only what the DAG file adds counts
    code = ("import sys; sys.path.insert(0, 'dags'); import airflow.sdk; base = set(sys.modules); "
            "import ingest_transaction_files; "
            "bad = [m for m in ('great_expectations', 'pandas', 'numpy', 'include.ingest') "
            "if m in sys.modules and m not in base]; print(bad)")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_dag_runs_end_to_end(dag, ingest_dsn, conn, s3, bucket, store, put, monkeypatch):
    """A manual run naming one file, then a scheduled-style run that discovers a dropped file."""
    info = psycopg.conninfo.conninfo_to_dict(ingest_dsn)
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_POSTGRES", json.dumps({
        "conn_type": "postgres", "host": info["host"], "port": int(info.get("port") or 5432),
        "login": info["user"], "password": info.get("password"), "schema": info["dbname"]}))
    u = put("manual.csv", H + "M1,2024-07-01T09:00:00,tea,2,3.10\nM2,2024-07-01,cake,1,4\n")
    run = dag.test(run_conf={"file": u.s3_key})
    assert run.state == "success"
    row = conn.execute("SELECT processing_status, s3_key FROM transaction_files WHERE id = %s",
                       (u.file_id,)).fetchone()
    assert row == ("completed", f"processed/{store}/{u.file_id}_manual.csv")
    s3.put_object(Bucket=bucket, Key=f"incoming/{store}/dropped.jsonl",
                  Body=(json.dumps({"transaction_id": "D1", "transaction_date": "2024-07-02",
                                    "items": ["tea"], "quantities": [1],
                                    "unit_utilities": [3.1]}) + "\n").encode())
    conn.rollback()
    run = dag.test(run_conf={"file": ""})            # (dag.test keeps the previous conf otherwise)
    assert run.state == "success"
    n = conn.execute("SELECT count(*) FROM transactions WHERE store_id = %s", (store,)).fetchone()[0]
    assert n == 3
