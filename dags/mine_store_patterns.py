"""Mine each store's high-utility patterns (spec 3.2): nightly, on fresh transactions, or by hand."""
from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task

from _shared.assets import LOCAL_PATTERNS, TRANSACTIONS
from _shared.defaults import DEFAULT_ARGS

DOC = """
### mine_store_patterns
Mines every selected store's transactions for high-utility itemsets (spec 3.2) and writes them to
`local_patterns`. Runs **nightly** (02:00 UTC), whenever the ingestion DAG updates the
`store_transactions` Asset (only the stores named in the asset events), and by hand with the Params below.

1. `plan`: picks the stores (`store_ids`; empty = every active store), each store's window
   (`window_start`/`window_end`; default: since the store's last successful mining, or everything),
   resolves the thresholds (defaults from `server_configs`) and creates one `pending` `mining_jobs` row
   per store. Stores with no new transactions are skipped. A store with more transactions than
   `server_configs.spark_threshold_transactions` goes to the PySpark path.
2. `local_jobs` / `spark_jobs` split the plan by path; `mine_local` (pool `mining`) / `mine_spark` (pool `spark`), mapped over the stores: the job goes
   `running`, the transactions are read in batches of `batch_size`, the engine runs, the patterns are
   written with COPY and the job is `completed` in the same transaction, which also supersedes the store's
   older patterns. A failure marks the job `failed` with the error and leaves the old patterns as they were;
   a retry reuses the job and never duplicates patterns. Each successful store emits a `local_patterns`
   asset event with `extra={"store_id", "mining_job_id", "patterns_found"}`.
3. `report`: counts per status.

**Guard rails** (the task fails at once, without retries, naming the parameter to raise): more patterns
than `max_patterns` (`server_configs.max_patterns_per_job`), resident memory above `memory_budget_mb`
(`server_configs.mining_memory_budget_mb`). `min_utility` 0 with no length cap is rejected up front.
Details: `docs/mine.md`.
"""

ENGINE_CHOICES = ["auto", "local", "spark"]


@dag(
    dag_id="mine_store_patterns",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC"),
                                 assets=[TRANSACTIONS]),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["platform", "mining"],
    doc_md=DOC,
    params={
        "store_ids": Param([], type="array", items={"type": "string", "format": "uuid"}, uniqueItems=True,
                           description="Stores to mine (UUIDs). Empty: every active store (or, for a run started "
                                       "by new transactions, the stores that received them)."),
        "min_utility": Param(None, type=["null", "number"], minimum=0,
                             description="Absolute minimum utility of a pattern. Empty: min_utility_ratio, else "
                                         "server_configs.min_utility_threshold, else "
                                         "mining_default_min_utility_ratio of the store's total utility."),
        "min_utility_ratio": Param(None, type=["null", "number"], minimum=0, maximum=1,
                                   description="Minimum utility as a share (0..1) of the store's total utility in "
                                               "the window. Do not combine with min_utility."),
        "min_support": Param(None, type=["null", "number"], minimum=0, maximum=1,
                             description="Minimum support, a fraction (0..1) of the window's transactions. Empty: "
                                         "server_configs.min_support_threshold."),
        "max_pattern_length": Param(None, type=["null", "integer"], minimum=0,
                                    description="Longest pattern (items). 0: no cap. Empty: "
                                                "server_configs.max_pattern_length, else 5."),
        "use_pruning": Param(True, type="boolean",
                             description="Use the engine's tighter bounds (same result; off only to diagnose)."),
        "batch_size": Param(1000, type="integer", minimum=1, maximum=1000000,
                            description="Transactions read from the database per batch (server-side cursor)."),
        "window_start": Param(None, type=["null", "string"], format="date-time",
                              description="Mine transactions from this time on (ISO 8601). Empty: since the "
                                          "store's last successful mining, or all."),
        "window_end": Param(None, type=["null", "string"], format="date-time",
                            description="Mine transactions before this time (ISO 8601). Empty: now."),
        "engine": Param("auto", type="string", enum=ENGINE_CHOICES,
                        description="auto: PySpark above server_configs.spark_threshold_transactions, else the "
                                    "local engine; local / spark force a path."),
        "max_patterns": Param(None, type=["null", "integer"], minimum=1,
                              description="Stop a store's run with an error above this many patterns. Empty: "
                                          "server_configs.max_patterns_per_job."),
        "memory_budget_mb": Param(None, type=["null", "integer"], minimum=1,
                                  description="Stop a store's run with an error when its resident memory exceeds "
                                              "this (MB). Empty: server_configs.mining_memory_budget_mb."),
    },
)
def mine_store_patterns():
    @task
    def plan() -> dict:
        import logging

        import psycopg

        from _shared.db import platform_dsn
        from include.mine.errors import ParameterError
        from include.mine.jobs import plan_runs
        from include.mine.params import RunRequest

        ctx = get_current_context()
        try:
            req = RunRequest.from_params(dict(ctx["params"]))
        except ParameterError as e:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(e)) from e
        events = ctx.get("triggering_asset_events") or {}
        event_stores = [str(ev.extra["store_id"]) for evs in events.values() for ev in evs
                        if (ev.extra or {}).get("store_id")]
        dag_run = ctx["dag_run"]
        run_info = {"dag_id": dag_run.dag_id, "run_id": dag_run.run_id}
        with psycopg.connect(platform_dsn(), application_name="mine_store_patterns") as conn:
            try:
                p = plan_runs(conn, req, run_key=f"{dag_run.dag_id}/{dag_run.run_id}",
                              event_store_ids=event_stores or None, run_info=run_info)
            except ParameterError as e:
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(str(e)) from e
            conn.commit()
        log = logging.getLogger("airflow.task")
        for j in p.jobs:
            log.info("store %s: job %s, %s transactions, %s path, min_utility %s", j.store_id, j.job_id,
                     j.n_transactions, j.engine_path, j.min_utility)
        for s in p.skipped:
            log.info("store %s skipped: %s", s["store_id"], s["reason"])
        return {"local": p.for_path("local"), "spark": p.for_path("spark"), "skipped": p.skipped}

    def _run(job: dict) -> dict:
        from _shared.db import platform_dsn
        from include.mine.errors import PermanentMiningError
        from include.mine.jobs import run_job

        ctx = get_current_context()
        ctx["store_id"] = job["store_id"]  # the mapped task's label (map_index_template)
        try:
            result = run_job(platform_dsn(), job["job_id"])
        except PermanentMiningError as e:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(e)) from e
        ctx["outlet_events"][LOCAL_PATTERNS].extra = {
            "store_id": result["store_id"], "mining_job_id": result["job_id"],
            "patterns_found": result["patterns_found"]}
        return result

    @task(pool="mining", outlets=[LOCAL_PATTERNS], map_index_template="{{ store_id }}")
    def mine_local(job: dict) -> dict:
        return _run(job)

    @task(pool="spark", outlets=[LOCAL_PATTERNS], map_index_template="{{ store_id }}")
    def mine_spark(job: dict) -> dict:
        import os

        from airflow.sdk import BaseHook

        try:  # the Spark master of connection platform_spark (secrets backend included); else local[*]
            c = BaseHook.get_connection("platform_spark")
            host = c.host if "://" in (c.host or "") else f"spark://{c.host}"
            os.environ.setdefault("PLATFORM_SPARK_MASTER", f"{host}:{c.port}" if c.port else host)
        except Exception:  # noqa: BLE001 - no such connection: include.mine.spark falls back
            pass
        return _run(job)

    @task(trigger_rule="none_failed")
    def report(local: list | None, spark: list | None, planned: dict) -> dict:
        done = [r for r in [*(local or []), *(spark or [])] if r]
        return {"completed": len(done), "patterns_found": sum(r["patterns_found"] for r in done),
                "skipped": planned["skipped"]}

    @task
    def jobs_for(planned: dict, path: str) -> list:
        return planned[path]

    planned = plan()
    local = mine_local.expand(job=jobs_for.override(task_id="local_jobs")(planned, "local"))
    spark = mine_spark.expand(job=jobs_for.override(task_id="spark_jobs")(planned, "spark"))
    report(local, spark, planned)


mine_store_patterns()
