"""Apply the platform's SQL migrations (include/sql) to the platform database."""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from _shared.assets import SCHEMA
from _shared.defaults import DEFAULT_ARGS

DOC = """
### platform_migrate
Applies the numbered SQL migrations of `include/sql/` to the database of connection
`platform_postgres`, in order, each in one transaction, recorded in `schema_migrations`.
Re-running applies nothing. It **refuses** to run when an applied migration's file was edited
(the task fails naming the file): fix the history, never edit an applied migration.

Run it after every deploy (the deploy pipeline triggers it; the local `./dev` does the same
through `python -m include.db.migrate`). It updates the `platform_schema` Asset; the other DAGs
check at their start that the schema is up to date and fail with a clear message if it is not.

Then it applies the Elasticsearch index templates of `include/search/templates/` (idempotent).

Param `dry_run`: list what would be applied, change nothing.
"""


@dag(
    dag_id="platform_migrate",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["platform", "schema"],
    doc_md=DOC,
    params={
        "dry_run": Param(False, type="boolean",
                         description="Only list the migrations that would be applied."),
    },
)
def platform_migrate():
    @task(outlets=[SCHEMA])
    def apply_migrations(params=None) -> dict:
        import dataclasses

        from _shared.db import platform_dsn
        from include.db.migrate import migrate

        return dataclasses.asdict(migrate(platform_dsn(), dry_run=params["dry_run"]))

    @task
    def apply_index_templates(params=None) -> list[str]:
        """Elasticsearch index templates of include/search (idempotent), after the SQL schema."""
        if params["dry_run"]:
            return []
        from airflow.providers.elasticsearch.hooks.elasticsearch import ElasticsearchSQLHook

        from include.search import apply_templates

        return apply_templates(ElasticsearchSQLHook(elasticsearch_conn_id="platform_es").get_conn().es)

    apply_migrations() >> apply_index_templates()


platform_migrate()
