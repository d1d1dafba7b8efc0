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
    assert set(dag.task_dict) == {"choose", "wait_for_files", "recover", "discover", "ingest",
                                  "loaded_stores", "publish"}
    sensor = dag.task_dict["wait_for_files"]
    assert type(sensor).__name__ == "S3KeySensor" and sensor.soft_fail
    assert sensor.deferrable and sensor.mode == "poke" and sensor.timeout == 9 * 60
    assert dag.task_dict["discover"].upstream_task_ids == {"choose", "wait_for_files", "recover"}
    assert dag.task_dict["recover"].upstream_task_ids == set()
    assert dag.task_dict["ingest"].pool == "ingestion"
    assert [o.name for o in dag.task_dict["publish"].outlets] == ["store_transactions"]
    assert dag.params["max_reject_share"] == 0.05 and dag.params["file"] == ""
    assert dag.params["stuck_after_minutes"] == 30 and dag.params["max_attempts"] == 5


def _trigger_of(sensor, bucket: str, key: str):
    """The trigger the sensor defers to, rebuilt from its serialized form as the triggerer does."""
    import copy
    import importlib

    from airflow.sdk.exceptions import TaskDeferred

    s = copy.copy(sensor)
    s.bucket_name, s.bucket_key = bucket, key          # rendered template; a prefix of this test
    with pytest.raises(TaskDeferred) as deferred:
        s.execute({})                                  # one poke on the worker: nothing yet
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout.total_seconds() == 9 * 60
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == "airflow.providers.amazon.aws.triggers.s3.S3KeyTrigger"
    assert (kwargs["aws_conn_id"], kwargs["wildcard_match"], kwargs["poke_interval"]) == \
        ("platform_s3", True, 30)
    kwargs["poke_interval"] = 0.2                      # (the test need not wait 30 s per poke)
    module, _, name = classpath.rpartition(".")
    return s, getattr(importlib.import_module(module), name)(**kwargs)


def test_sensor_trigger_fires_on_an_upload_against_the_s3_server(dag, s3, bucket):
    """The deferred half of the sensor, run as the triggerer runs it (aiobotocore against the
    moto S3 server): it waits while nothing matches, and fires once an object is uploaded."""
    import asyncio
    import uuid

    prefix = f"incoming/t-trigger-{uuid.uuid4().hex[:10]}/"
    sensor, trigger = _trigger_of(dag.task_dict["wait_for_files"], bucket, prefix + "*")

    async def scenario():
        events = trigger.run()
        first = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(1.5)                       # several pokes: nothing there yet
        assert not first.done()
        s3.put_object(Bucket=bucket, Key=prefix + "monday.csv", Body=b"x")
        event = await asyncio.wait_for(first, 30)
        await events.aclose()
        return event

    try:
        event = asyncio.run(scenario())
    finally:
        s3.delete_object(Bucket=bucket, Key=prefix + "monday.csv")
    assert event.payload == {"status": "success"}
    assert sensor.execute_complete({}, event.payload) is None      # the task then succeeds


def test_sensor_trigger_reports_s3_errors(dag, bucket):
    """An S3 error inside the triggerer comes back as an error event, which fails the sensor's
    resumption (and soft_fail turns that into skipped; discover then lists the bucket itself)."""
    import asyncio
    import uuid

    from airflow.exceptions import AirflowException

    prefix = f"incoming/t-trigger-{uuid.uuid4().hex[:10]}/"
    _s, trigger = _trigger_of(dag.task_dict["wait_for_files"], bucket, prefix + "*")
    trigger.bucket_name = "no-such-bucket-of-the-platform"

    async def first_event():
        events = trigger.run()
        try:
            return await asyncio.wait_for(events.__anext__(), 30)
        finally:
            await events.aclose()

    event = asyncio.run(first_event())
    assert event.payload["status"] == "error" and "NoSuchBucket" in event.payload["message"]
    with pytest.raises(AirflowException, match="NoSuchBucket"):
        dag.task_dict["wait_for_files"].execute_complete({}, event.payload)


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
    # a file whose loader died after its last retry: `recover` puts it back, the same run loads it
    stuck = put("stuck.csv", H + "S1,2024-07-03,jam,1,2.5\n")
    conn.execute("""UPDATE transaction_files SET processing_status = 'processing',
                           processing_started_at = now() - interval '2 hours',
                           processing_attempts = 1 WHERE id = %s""", (stuck.file_id,))
    conn.commit()
    run = dag.test(run_conf={"file": ""})            # (dag.test keeps the previous conf otherwise)
    assert run.state == "success"
    n = conn.execute("SELECT count(*) FROM transactions WHERE store_id = %s", (store,)).fetchone()[0]
    assert n == 4
    row = conn.execute("SELECT processing_status, processing_attempts FROM transaction_files "
                       "WHERE id = %s", (stuck.file_id,)).fetchone()
    assert row == ("completed", 2)
    acts = [a for (a,) in conn.execute("SELECT action_type FROM activity_logs WHERE resource_id = %s "
                                       "ORDER BY created_at", (stuck.file_id,)).fetchall()]
    assert acts == ["transaction_file_recovered", "transaction_file_ingested"]
    conn.rollback()
