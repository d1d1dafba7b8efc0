"""Nightly retention (spec 4.1): archive old rows to the bucket, drop old partitions, keep the rollups."""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from _shared.assets import ACTIVITY, TRANSACTIONS
from _shared.defaults import DEFAULT_ARGS

DOC = """
### retain_and_archive
Applies the retention rules of spec 4.1 every night (logic: `include/retain/`, rules and operator guide:
`docs/retain.md`).

| data | rule |
|---|---|
| `transactions` | 2 years in PostgreSQL; older rows archived to the bucket (Parquet, zstd), then removed |
| `activity_logs` | 1 year; older rows archived (whole monthly partitions dropped), then removed |
| `performance_metrics` | detail 6 months (rollup refreshed first); hourly/daily rollups 2 years |
| `global_patterns` | kept for ever, one version per round (`global_patterns_latest`, `global_patterns_versions`) |
| Elasticsearch | monthly `activity-logs-*` / `metrics-*` indices past the same rules deleted whole (last task) |
| `local_patterns` | 1 year, or until the store's next successful mining |

Archive: `archive/<table>/store_id=<id>/year=<y>/month=<m>/part-<manifest>.parquet` in the bucket
(variable `platform_bucket`), a manifest per run under `archive/<table>/_manifests/`, and rows deleted
only after the files were read back and checked, in the same transaction as the manifest's `committed`
mark. A crashed run is recovered by the next one. Bring rows back with
`python -m include.retain restore-archive --table transactions --store S --from D1 --to D2 [--staging]`.

Params: `as_of` (date; empty = today, UTC): apply the rules as on that day; `dry_run`: only report, per
table, what would be archived and removed. Every real run records counts and bytes per table in
`performance_metrics` (metric_type `retention`) and one `activity_logs` entry (`retention_run`).
"""


@dag(
    dag_id="retain_and_archive",
    schedule="30 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["platform", "retention"],
    doc_md=DOC,
    params={
        "as_of": Param(None, type=["null", "string"], format="date",
                       description="Apply the retention rules as on this date (YYYY-MM-DD, UTC); empty: today."),
        "dry_run": Param(False, type="boolean",
                         description="Only report what would be archived and removed per table; change nothing."),
    },
)
def retain_and_archive():
    @task
    def check_schema() -> None:
        from _shared.db import platform_dsn
        from include.db.migrate import assert_up_to_date

        assert_up_to_date(platform_dsn())

    @task
    def maintain_partitions(params=None) -> list[str]:
        """Monthly partitions ahead and the last two days' rollup (native path; no-op on TimescaleDB)."""
        if params["dry_run"]:
            return []
        import psycopg

        from _shared.db import platform_dsn
        from include.db.metrics import maintain

        with psycopg.connect(platform_dsn()) as conn:
            created = maintain(conn)
            conn.commit()
        return created

    @task(outlets=[TRANSACTIONS, ACTIVITY])
    def apply_retention(params=None) -> dict:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk import Variable

        from _shared.db import platform_dsn
        from include.retain.archive import S3Store
        from include.retain.policy import parse_as_of
        from include.retain.run import run

        store = S3Store(S3Hook(aws_conn_id="platform_s3").get_conn(), Variable.get("platform_bucket"))
        rep = run(platform_dsn(), store, parse_as_of(params["as_of"]), dry_run=params["dry_run"])
        for t in rep.tables:
            print(f"{t.table:<20} {'would remove' if rep.dry_run else 'removed'} {t.rows:>10} rows "
                  f"{t.bytes:>12} bytes  cutoff {t.cutoff}  {t.details}")
        return rep.as_dict()

    @task
    def expire_search_indices(params=None) -> list[str]:
        """Elasticsearch keeps the same rules: whole monthly activity-log and metrics indices past their
        retention are deleted by exact name (no delete-by-query). Dry run: only list them."""
        from datetime import datetime, time, timezone

        import psycopg
        from airflow.providers.elasticsearch.hooks.elasticsearch import ElasticsearchSQLHook

        from _shared.db import platform_dsn
        from include.db.configs import get_config
        from include.retain.policy import parse_as_of
        from include.search.indices import delete_expired_indices, expired_indices

        with psycopg.connect(platform_dsn()) as conn:
            days = {"activity_logs_days": int(get_config(conn, "retention_activity_logs_days", 365)),
                    "metrics_days": int(get_config(conn, "retention_performance_metrics_detail_days", 183))}
        now = datetime.combine(parse_as_of(params["as_of"]), time.min, tzinfo=timezone.utc)
        es = ElasticsearchSQLHook(elasticsearch_conn_id="platform_es").get_conn().es
        names = (expired_indices if params["dry_run"] else delete_expired_indices)(es, now=now, **days)
        print(f"{'would delete' if params['dry_run'] else 'deleted'} {len(names)} index(es): {names}")
        return names

    check_schema() >> maintain_partitions() >> apply_retention() >> expire_search_indices()


retain_and_archive()
