"""Ingest the stores' transaction files: S3 incoming/ -> validate -> transactions (issue 5)."""
from __future__ import annotations

from datetime import timedelta
from importlib.util import find_spec

import pendulum
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk import Param, dag, task

from _shared.assets import TRANSACTIONS
from _shared.defaults import DEFAULT_ARGS

S3_CONN = "platform_s3"
BUCKET_TEMPLATE = "{{ var.value.get('platform_bucket', 'platform-data') }}"
# The sensor waits in the triggerer, which needs aiobotocore (apache-airflow-providers-amazon
# [aiobotocore]); without it, fall back to reschedule mode (no worker slot held while waiting).
DEFERRABLE = find_spec("aiobotocore") is not None

DOC = """
### ingest_transaction_files
Loads the transaction files of the stores (spec 3.1; the file formats are in `docs/ingest.md`).

* **When:** every 10 minutes a run starts and waits for objects under `incoming/` with a
  **deferrable** S3 sensor (it waits in the triggerer, no worker slot, no scheduler polling; up to
  9 minutes, then the run ends as skipped; reschedule mode when aiobotocore, which the trigger
  needs, is not installed). A manual run with param `file` (a file id, an object
  key or an `s3://` URI) processes that file at once, also when it had `failed` before.
* **Per file** (dynamic task mapping, pool `ingestion`): `processing` -> download -> file-level
  great-expectations suite -> streaming parse + row-level suite per chunk -> one COPY in one DB
  transaction -> `completed` / `failed`, object moved to `processed/` / `failed/`, rejected
  transactions with their reasons in `rejected/<store_id>/<name>.csv`. A share of rejected
  transactions above `max_reject_share` fails the whole file and loads nothing.
* Files dropped into `incoming/<store_id>/` by other means than `python -m include.ingest upload`
  are registered here first (`discover`).
* **Emits** Asset `store_transactions` once per store that got new rows, with
  `extra = {"store_id", "file_ids", "rows_loaded"}`.
"""


@dag(
    dag_id="ingest_transaction_files",
    schedule="*/10 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    tags=["platform", "ingestion"],
    doc_md=DOC,
    params={
        "file": Param("", type="string",
                      description="Process this file now: a file id, an object key or s3:// URI. "
                                  "Empty: wait for and process all new files."),
        "max_reject_share": Param(0.05, type="number", minimum=0, maximum=1,
                                  description="Fail a file when more than this share of its "
                                              "transactions is rejected."),
    },
)
def ingest_transaction_files():
    @task.branch
    def choose(params=None) -> str:
        return "discover" if params["file"].strip() else "wait_for_files"

    wait_for_files = S3KeySensor(
        task_id="wait_for_files",
        aws_conn_id=S3_CONN,
        bucket_name=BUCKET_TEMPLATE,
        bucket_key="incoming/*",
        wildcard_match=True,
        deferrable=DEFERRABLE,
        mode="poke" if DEFERRABLE else "reschedule",
        poke_interval=30 if DEFERRABLE else 60,
        timeout=9 * 60,
        soft_fail=True,  # no file within the timeout: the run ends as skipped, not failed
        retries=2,       # retries apply to errors only (S3 unreachable), never to the timeout
    )

    @task(trigger_rule="none_failed_min_one_success")
    def discover(params=None) -> list[str]:
        """Registers dropped files; the ids to process (the named file, or all pending ones)."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk import Variable

        import psycopg
        from _shared.db import platform_dsn
        from include.ingest.upload import discover_files, find_file, pending_files

        bucket = Variable.get("platform_bucket", default="platform-data")
        s3 = S3Hook(aws_conn_id=S3_CONN).get_conn()
        with psycopg.connect(platform_dsn(), application_name="ingest_discover") as conn:
            discover_files(conn, s3, bucket=bucket)
            ref = params["file"].strip()
            if ref:
                fid = find_file(conn, ref, bucket=bucket)
                if fid is None:
                    raise ValueError(f"param file: no registered file {ref!r} (a file id, "
                                     f"an object key or s3://{bucket}/<key>)")
                return [fid]
            return pending_files(conn)

    @task(pool="ingestion", retries=3, execution_timeout=timedelta(hours=2))
    def ingest(file_id: str, params=None) -> dict:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk import Variable

        import psycopg
        from _shared.db import platform_dsn
        from include.ingest.load import ingest_file

        s3 = S3Hook(aws_conn_id=S3_CONN).get_conn()
        with psycopg.connect(platform_dsn(), application_name="ingest_file") as conn:
            result = ingest_file(conn, s3, file_id,
                                 bucket=Variable.get("platform_bucket", default="platform-data"),
                                 max_reject_share=float(params["max_reject_share"]),
                                 retry_failed=bool(params["file"].strip()))
        return result.as_dict()

    @task
    def loaded_stores(results) -> list[dict]:
        """One entry per store that got new rows in this run."""
        stores: dict[str, dict] = {}
        for i in range(len(results)):          # (iterating the lazy sequence probes past its end)
            r = results[i]
            if r and r["status"] == "completed" and r["rows_loaded"]:
                s = stores.setdefault(r["store_id"], {"store_id": r["store_id"], "file_ids": [],
                                                      "rows_loaded": 0})
                s["file_ids"].append(r["file_id"])
                s["rows_loaded"] += r["rows_loaded"]
        return list(stores.values())

    @task(outlets=[TRANSACTIONS])
    def publish(store: dict, outlet_events=None) -> dict:
        outlet_events[TRANSACTIONS].extra = store
        return store

    picked = choose()
    files = discover()
    picked >> [wait_for_files, files]
    wait_for_files >> files
    publish.expand(store=loaded_stores(ingest.expand(file_id=files)))


ingest_transaction_files()
