"""Search and observability (issue 11): Elasticsearch index templates, exactly-once shipping of
activity_logs / performance_metrics / global_patterns, search functions, and live state in Redis.

    include.search.indices   names, templates (apply_templates), index retention
    include.search.ship      ship_all / ship_stream / reconcile_stream / ship_global_patterns
    include.search.query     search_patterns, search_logs, aggregations, Viewer (store filtering)
    include.search.live      Redis: Progress, PlatformLock, ConfigCache, Sessions, TokenRevocations
    include.search.clients   clients and health checks (ServiceUnavailable names the service)

CLI: ``python -m include.search patterns "wine cheese" [--min-utility U] [--round N|latest]``,
``python -m include.search logs [--store S] [--user U] [--action A] [--since T] [--text ...]``,
``apply-templates``, ``ship``, ``status``. No Airflow imports here.
"""


def apply_templates(es_client, prefix: str = "") -> list[str]:
    """Apply the platform's index templates (for the migration command); returns their names."""
    from include.search.indices import apply_templates as _apply

    return _apply(es_client, prefix)
