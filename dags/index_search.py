"""Ship activity logs, performance metrics and global patterns to Elasticsearch, exactly once."""
from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from _shared.assets import ACTIVITY, GLOBAL_PATTERNS, LOCAL_PATTERNS, TRANSACTIONS
from _shared.defaults import DEFAULT_ARGS

DOC = """
### index_search
Copies what the pipeline writes to PostgreSQL into Elasticsearch for search (spec 1.1):

* `activity_logs` -> `activity-logs-YYYY.MM`, `performance_metrics` -> `metrics-YYYY.MM` (one index per
  UTC month, so retention deletes whole indices), document id = row id, create-only bulk requests and a
  high-water mark in `search_ship_state`: retries and reruns add nothing.
* `global_patterns` of every **completed** round -> `global-patterns` (`search_shipped_rounds`).
* Hourly (Param `reconcile`) the row counts per month are compared with the document counts and the
  months that differ are re-shipped (rows inserted with an old timestamp).

Runs every 5 minutes and whenever ingestion, mining, rounds or activity update their Assets. Search is
not on the pipeline's critical path: no other DAG waits for this one.

**Degraded mode**: if Elasticsearch or Redis is down, `check_services` fails with a message naming the
service; the high-water marks stay at the last acknowledged batch and the next run catches up exactly.
Progress is published in Redis (`platform:progress:index_search:<target>`), one run at a time per
target (Redis lock `index_search:<target>` plus a PostgreSQL advisory lock per stream).

Environment (optional): `PLATFORM_SEARCH_INDEX_PREFIX` (index namespace, default none),
`PLATFORM_REDIS_NAMESPACE` (default `platform`). Search from a shell:
`python -m include.search patterns "wine cheese"`, `python -m include.search logs --since 24h`.
"""

ES_CONN_ID = "platform_es"
REDIS_CONN_ID = "platform_redis"


def _clients():
    """Elasticsearch and Redis clients from the provider hooks, the namespaces from the environment."""
    import os

    from airflow.providers.elasticsearch.hooks.elasticsearch import ElasticsearchSQLHook
    from airflow.providers.redis.hooks.redis import RedisHook

    from include.search.indices import Namespace
    from include.search.live import text_client

    # bulk requests of a few thousand documents may take longer than the client's 10 s default
    es = ElasticsearchSQLHook(elasticsearch_conn_id=ES_CONN_ID).get_conn().es.options(request_timeout=120)
    r = text_client(RedisHook(redis_conn_id=REDIS_CONN_ID).get_conn())
    ns = Namespace(os.environ.get("PLATFORM_SEARCH_INDEX_PREFIX", ""))
    return es, r, ns, os.environ.get("PLATFORM_REDIS_NAMESPACE", "platform")


@dag(
    dag_id="index_search",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/5 * * * *", timezone="UTC"),
        assets=(TRANSACTIONS | LOCAL_PATTERNS | GLOBAL_PATTERNS | ACTIVITY),
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["platform", "search", "observability"],
    doc_md=DOC,
    params={
        "batch_size": Param(5000, type="integer", minimum=100, maximum=50000,
                            description="Rows per bulk request (and per committed high-water mark step)."),
        "overlap_minutes": Param(10, type="number", minimum=0, maximum=1440,
                                 description="Re-read this many minutes before the high-water mark, for rows "
                                             "whose transaction committed late (re-read rows are not indexed twice)."),
        "reconcile": Param("hourly", type="string", enum=["hourly", "always", "never"],
                           description="Compare PostgreSQL and Elasticsearch counts per month and re-ship the "
                                       "months that differ: at most hourly, every run, or never."),
        "decode_items": Param(False, type="boolean",
                              description="Index decoded item names (global_patterns_decoded) instead of the "
                                          "stored, possibly keyed, item ids."),
    },
)
def index_search():
    @task
    def check_services() -> dict:
        """Fail fast, naming the service, when Elasticsearch or Redis is down."""
        from include.search.clients import check_es, check_redis

        es, r, ns, _ = _clients()
        health = check_es(es)
        check_redis(r)
        return {"elasticsearch": health.get("status"), "redis": "ok", "target": ns.target}

    @task(max_active_tis_per_dag=1)
    def ship(params=None) -> dict:
        from datetime import timedelta

        from include.db.session import connect

        from _shared.db import platform_dsn
        from include.search.ship import ship_all

        es, r, ns, redis_ns = _clients()
        with connect(platform_dsn(), application_name="index_search") as conn:
            return ship_all(conn, es, ns=ns, redis=r, batch_size=params["batch_size"],
                            overlap=timedelta(minutes=params["overlap_minutes"]), reconcile=params["reconcile"],
                            decode_items=params["decode_items"], redis_ns=redis_ns)

    check_services() >> ship()


index_search()
