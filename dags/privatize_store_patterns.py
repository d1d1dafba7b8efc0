"""The workflow's privatize step: a mined store's window -> a differentially private contribution."""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from _shared.assets import PRIVATE_CONTRIBUTIONS
from _shared.defaults import DEFAULT_ARGS

DOC = """
### privatize_store_patterns
The *apply privacy* step (spec 3.3 step 3, local mode) for stores that have been mined: each store's
latest completed `mining_jobs` window becomes a contribution in which the store added the **full
noise for its own ε** (OpenDP discrete Laplace or Gaussian, per `privacy_configs.noise_type`). The
released patterns are store-proposed: OpenDP's threshold mechanism over the clipped utility of every
itemset of size ≤ `max_pattern_length`; released values are linked to the job's `local_patterns`.
With `privacy_configs.hash_patterns` item names are released as keyed HMAC ids (connection
`platform_privacy_hmac`; the key never leaves the task).

1. `plan`: the stores (`store_ids`; empty = every active store with a privacy config and a completed
   mining job); stores that cannot release are listed with the reason.
2. `apply_privacy` (mapped per store): reserves the release's cost in the store's
   `privacy_budget_ledger` (**refused before any noise** when the store's lifetime budget or the global
   cap cannot afford it: that store's task fails without retries, the others go on), draws the noise,
   writes every released value to `privacy_applications` and charges the ledger in one transaction,
   and returns the contribution (public values only). A retry returns the recorded release.
3. `report`: one line per store.

Emits the `privacy_contributions` Asset (extra: store, release, pattern count, ε). Federated rounds
(`federated_round`) compute their own releases per level; this DAG is for stand-alone releases and
store-proposed candidates. See `docs/privacy.md`.
"""


@dag(
    dag_id="privatize_store_patterns",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    tags=["platform", "privacy"],
    doc_md=DOC,
    params={
        "store_ids": Param([], type="array", items={"type": "string", "format": "uuid"}, uniqueItems=True,
                           description="Stores to release (UUIDs). Empty: every active store with a privacy "
                                       "config and a completed mining job."),
        "epsilon": Param(0.1, type="number", exclusiveMinimum=0, maximum=10,
                         description="ε of this release per transaction, charged to each store's privacy "
                                     "budget ledger (refused if the store cannot afford it)."),
        "release_name": Param("contribution", type="string", pattern="^[a-z0-9_.-]{1,40}$",
                              description="Name of the release in the ledger (the run id is appended)."),
        "max_pattern_length": Param(3, type="integer", minimum=1, maximum=3,
                                    description="Largest released itemset (≤ the mining job's own length)."),
    },
)
def privatize_store_patterns():
    @task
    def plan(params=None) -> list[dict]:
        import logging

        import psycopg

        from _shared.db import platform_dsn
        from include.privacy.release import plan_releases

        with psycopg.connect(platform_dsn(), application_name="privatize_store_patterns") as conn:
            jobs, skipped = plan_releases(conn, list(params["store_ids"]),
                                          max_pattern_length=params["max_pattern_length"])
        log = logging.getLogger("airflow.task")
        for s in skipped:
            log.warning("store %s skipped: %s", s["store_id"], s["reason"])
        for j in jobs:
            log.info("store %s: mining job %s, window [%s, %s)", j.store_id, j.mining_job_id, j.window_start,
                     j.window_end)
        return [j.as_dict() for j in jobs]

    @task(outlets=[PRIVATE_CONTRIBUTIONS], map_index_template="{{ store_id }}")
    def apply_privacy(job: dict, params=None, dag_run=None, outlet_events=None) -> dict:
        import psycopg
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowFailException

        from _shared.db import platform_dsn
        from include.privacy.budget import BudgetExceeded
        from include.privacy.hashing import HMAC_CONN_ID, HashKeyError
        from include.privacy.release import ReleaseJob, release_name_for, release_store, summary

        get_current_context()["store_id"] = job["store_id"]
        try:  # only stores with hash_patterns use it; it stays in this process's memory
            key = BaseHook.get_connection(HMAC_CONN_ID).password or None
        except Exception:  # noqa: BLE001 - no such connection: release_store fails clearly if hashing is on
            key = None
        try:
            name = release_name_for(params["release_name"], dag_run.run_id)
            with psycopg.connect(platform_dsn(), application_name="privatize_store_patterns") as conn:
                c = release_store(conn, ReleaseJob.of(job), epsilon=float(params["epsilon"]), release_name=name,
                                  hash_key=key)
        except (BudgetExceeded, HashKeyError, ValueError) as e:
            raise AirflowFailException(f"store {job['store_id']}: {e}") from None
        s = summary(c)
        outlet_events[PRIVATE_CONTRIBUTIONS].extra = s
        print(s)
        return c.to_message()

    @task
    def report(contributions: list | None) -> list:
        from include.privacy.apply import Contribution
        from include.privacy.release import summary

        out = [summary(Contribution.from_message(m)) for m in (contributions or []) if m]
        for s in out:
            print(s)
        return out

    report(apply_privacy.expand(job=plan()))


privatize_store_patterns()
