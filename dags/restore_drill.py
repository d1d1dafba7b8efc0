"""Weekly restore drill (spec 4.2): point-in-time restore of a backup into a scratch cluster, verified."""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from _shared.backup import pgbackrest
from _shared.defaults import DEFAULT_ARGS

DOC = """
### restore_drill
Proves every week that the backups restore, to the exact instant asked for (logic:
`include/retain/drill.py`, guide: `docs/retain.md`).

1. **restore point**: row counts of the spec's tables are taken while writers are held off for a moment
   (SHARE locks), with `clock_timestamp()` as the target; stored in `backup_restore_points`. pgBackRest
   `check` then pushes the WAL holding the target (and what follows) into the repositories.
2. **drill_main**: restore from repo1 with point-in-time recovery to the target into a scratch data
   directory, start it on a spare port with WAL archiving off, wait for promotion, count the same tables:
   every count must equal the recorded one (rows written before the target present, after it absent).
   The scratch cluster is stopped and deleted afterwards.
3. **drill_dr**: the same from the disaster-recovery repository (repo2) **alone**: with a configuration
   that does not know repo1 at all.

Results (ok 1/0, restore and recovery seconds, restored bytes) go to `performance_metrics`
(metric_type `backup`, names `restore_drill.*`); a mismatch fails the task.

Params: `restore_point_id` (replay an older recorded point instead of taking one now), `dr` (also drill
the DR repository; it needs a DR backup older than the target: see `backup_database`).
"""


@dag(
    dag_id="restore_drill",
    schedule="0 4 * * 6",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["platform", "backup"],
    doc_md=DOC,
    params={
        "restore_point_id": Param(None, type=["null", "string"],
                                  description="Id of a backup_restore_points row to replay; empty: take one now."),
        "dr": Param(True, type="boolean",
                    description="Also restore from the disaster-recovery repository (repo2) alone."),
    },
)
def restore_drill():
    @task
    def restore_point(params=None) -> str:
        from _shared.db import platform_dsn
        from include.retain import drill

        if params["restore_point_id"]:
            return drill.get_restore_point(platform_dsn(), params["restore_point_id"]).id
        point = drill.record_restore_point(platform_dsn(), label="restore_drill")
        pgbackrest().check()  # the WAL holding the target is in both repositories
        return point.id

    @task
    def drill_main(point_id: str) -> dict:
        from _shared.db import platform_dsn
        from include.retain import drill, jobs

        dsn = platform_dsn()
        return jobs.drill(pgbackrest(), dsn, repo=1, point=drill.get_restore_point(dsn, point_id))

    @task
    def drill_dr(point_id: str, params=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from _shared.db import platform_dsn
        from include.retain import drill, jobs

        if not params["dr"]:
            raise AirflowSkipException("Param dr is off")
        dsn = platform_dsn()
        return jobs.drill(pgbackrest(), dsn, repo=2, repo_only=True, point=drill.get_restore_point(dsn, point_id))

    p = restore_point()
    drill_main(p) >> drill_dr(p)


restore_drill()
