"""Daily pgBackRest backups of the platform's cluster (spec 4.2): incremental daily, full on Sunday, a
monthly full into the disaster-recovery repository, expire, and a loud freshness check."""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from _shared.backup import pgbackrest
from _shared.defaults import DEFAULT_ARGS


def _day(logical_date):
    return logical_date or pendulum.now("UTC")

DOC = """
### backup_database
pgBackRest (Debian's 2.45) backups of the PostgreSQL cluster into repositories on the S3 API, AES-256
encrypted (cipher passphrases from connection `platform_backup`, never from code). WAL is archived
continuously into both repositories by the server's `archive_command`, so any instant since the oldest
kept backup can be restored (point-in-time recovery).

| task | what |
|---|---|
| `backup_main` | repo1 (main): **full on Sunday**, **incremental** on the other days (Param `type` overrides) |
| `backup_dr` | repo2 (disaster recovery: another bucket and region): **full on the 1st of each month** (Param `dr`) |
| `expire` | applies the retention: repo1 keeps 2 fulls (+ their incrementals and WAL), repo2 keeps 3 fulls |
| `check_freshness` | **fails** when the newest good repo1 backup is older than 26 hours (runs even if a backup failed) |

Each backup's size, repository size and duration (from `pgbackrest info --output=json`) go to
`performance_metrics` (metric_type `backup`). Restoring: `docs/retain.md`; the weekly proof is DAG
`restore_drill`.
"""


@dag(
    dag_id="backup_database",
    schedule="0 1 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["platform", "backup"],
    doc_md=DOC,
    params={
        "type": Param(None, type=["null", "string"], enum=[None, "full", "incr", "diff"],
                      description="Backup type of repo1; empty: full on Sunday, incremental otherwise."),
        "dr": Param("auto", type="string", enum=["auto", "always", "never"],
                    description="Full backup into the DR repository (repo2): auto = on the 1st of the month."),
        "max_age_hours": Param(26, type="number", minimum=1,
                               description="check_freshness fails when the newest good backup is older than this."),
    },
)
def backup_database():
    @task
    def backup_main(params=None, logical_date=None) -> dict:
        from _shared.db import platform_dsn
        from include.retain import jobs
        from include.retain.pgbackrest import scheduled_type

        btype = params["type"] or scheduled_type(_day(logical_date))
        return jobs.backup(pgbackrest(), platform_dsn(), repo=1, type=btype,
                           annotations={"kind": "weekly" if btype == "full" else "daily"})

    @task
    def backup_dr(params=None, logical_date=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from _shared.db import platform_dsn
        from include.retain import jobs
        from include.retain.pgbackrest import dr_due

        if params["dr"] == "never" or (params["dr"] == "auto" and not dr_due(_day(logical_date))):
            raise AirflowSkipException("the DR repository gets its full backup on the 1st of the month")
        return jobs.backup(pgbackrest(), platform_dsn(), repo=2, type="full", annotations={"kind": "monthly"})

    @task(trigger_rule="none_failed")
    def expire() -> dict:
        from include.retain import jobs

        p = pgbackrest()
        return {"repo1": jobs.expire(p, 1), "repo2": jobs.expire(p, 2)}

    @task(trigger_rule="all_done")
    def check_freshness(params=None) -> dict:
        from datetime import timedelta

        from _shared.db import platform_dsn
        from include.retain import jobs

        return jobs.freshness(pgbackrest(), platform_dsn(), repo=1,
                              max_age=timedelta(hours=float(params["max_age_hours"])))

    backup_main() >> backup_dr() >> expire() >> check_freshness()


backup_database()
