"""Ingest the stores' transaction files: S3 incoming/ -> validate -> transactions (issue 5)."""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk import Param, dag, task

from _shared.assets import TRANSACTIONS
from _shared.defaults import DEFAULT_ARGS

S3_CONN = "platform_s3"
BUCKET_TEMPLATE = "{{ var.value.get('platform_bucket', 'platform-data') }}"

DOC = """
### ingest_transaction_files
Loads the transaction files of the stores (spec 3.1; the file formats are in `docs/ingest.md`).

* **When:** every 10 minutes a run starts and waits for objects under `incoming/` with a
  **deferrable** S3 sensor (`S3KeyTrigger` in the triggerer, via aiobotocore: no worker slot, no
  scheduler polling; up to 9 minutes, then the sensor is skipped and the run goes on with what is
  pending). A manual run with param `file` (a file id, an object key or an `s3://` URI)
  processes that file at once, also when it had `failed` before.
* **Recovery** (`recover`, every run): a file left in `processing` by a loader that died (claim
  older than `stuck_after_minutes`, claim lock free) goes back to `pending`, or to `failed` with
  a clear `error_message` once it has had `max_attempts` attempts (`activity_logs`).
* **Per file** (dynamic task mapping, pool `ingestion`): `processing` -> download -> file-level
  great-expectations suite -> streaming parse + row-level suite per chunk -> one COPY in one DB
  transaction -> `completed` / `failed`, object moved to `processed/` / `failed/`, rejected
  transactions with their reasons in `rejected/<store_id>/<name>.csv`. A share of rejected
  transactions above `max_reject_share` fails the whole file and loads nothing.
* **Live progress** of each file in Redis (`platform:progress:ingest:<file_id>`: phase, rows
  read/loaded/rejected); Redis being down only logs a warning.
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
        "stuck_after_minutes": Param(30, type="integer", minimum=1,
                                     description="recover: a file in processing whose claim is "
                                                 "older and whose loader is gone is stuck."),
        "max_attempts": Param(5, type="integer", minimum=1,
                              description="recover: a stuck file with this many attempts is "
                                          "marked failed instead of pending."),
    },
)
def ingest_transaction_files():
    @task.branch
    def choose(params=None) -> str:
        return "discover" if params["file"].strip() else "wait_for_files"

    # One poke on the worker, then S3KeyTrigger waits in the triggerer (aiobotocore). Timeout and
    # errors end it as skipped (soft_fail): `discover` still runs (none_failed_min_one_success)
    # and lists the bucket itself, so a missed event delays nothing beyond this run; S3 really
    # being down fails `discover`, which retries.
    wait_for_files = S3KeySensor(
        task_id="wait_for_files",
        aws_conn_id=S3_CONN,
        bucket_name=BUCKET_TEMPLATE,
        bucket_key="incoming/*",
        wildcard_match=True,
        deferrable=True,
        poke_interval=30,
        timeout=9 * 60,
        soft_fail=True,
    )

    @task
    def recover(params=None) -> list[dict]:
        """Files stuck in processing (dead loader): back to pending, or failed after too many
        attempts."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk import Variable

        import psycopg
        from _shared.db import platform_dsn
        from include.ingest.recover import recover_stuck_files

        s3 = S3Hook(aws_conn_id=S3_CONN).get_conn()
        with psycopg.connect(platform_dsn(), application_name="ingest_recover") as conn:
            done = recover_stuck_files(
                conn, s3, bucket=Variable.get("platform_bucket", default="platform-data"),
                stuck_after=timedelta(minutes=int(params["stuck_after_minutes"])),
                max_attempts=int(params["max_attempts"]))
        return [d.as_dict() for d in done]

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
    def ingest(file_id: str, params=None, ti=None) -> dict:
        """One file; live progress goes to Redis (platform:progress:ingest:<file_id>, best
        effort: Redis down only logs a warning)."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk import Variable

        import psycopg
        from _shared.db import platform_dsn
        from include.ingest.load import ingest_file

        s3 = S3Hook(aws_conn_id=S3_CONN).get_conn()
        owner = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}[{ti.map_index}] try {ti.try_number}"
        with psycopg.connect(platform_dsn(), application_name="ingest_file") as conn:
            result = ingest_file(conn, s3, file_id,
                                 bucket=Variable.get("platform_bucket", default="platform-data"),
                                 max_reject_share=float(params["max_reject_share"]),
                                 retry_failed=bool(params["file"].strip()), owner=owner)
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
    [wait_for_files, recover()] >> files
    publish.expand(store=loaded_stores(ingest.expand(file_id=files)))


ingest_transaction_files()
