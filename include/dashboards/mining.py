"""Mining dashboard: jobs per store with time, peak memory, patterns found and the engine path
(``local`` compiled engine or ``spark``)."""
from __future__ import annotations

import psycopg

from include.dashboards import STORE_IN_SCOPE, Page, Scope, check_page, rows


def store_summary(conn: psycopg.Connection, scope: Scope, *, limit: int = 50, offset: int = 0) -> dict:
    """Per store in scope (by name): jobs, completed/failed, local/spark counts, last job, mean time,
    peak memory (MB) and patterns of the last completed job."""
    check_page(limit, offset)
    p = {**scope.params(), "limit": limit, "offset": offset}
    total = conn.execute(f"SELECT count(*) FROM stores s WHERE {STORE_IN_SCOPE}", p).fetchone()[0]
    items = rows(conn.execute(
        f"""SELECT s.id AS store_id, s.name, count(j.id)::int AS jobs,
                   count(j.id) FILTER (WHERE j.status = 'completed')::int AS completed,
                   count(j.id) FILTER (WHERE j.status = 'failed')::int AS failed,
                   count(j.id) FILTER (WHERE j.engine_path = 'local')::int AS local_jobs,
                   count(j.id) FILTER (WHERE j.engine_path = 'spark')::int AS spark_jobs,
                   max(j.started_at) AS last_started_at,
                   avg(j.execution_time_seconds) FILTER (WHERE j.status = 'completed')::float8 AS mean_seconds,
                   max(j.memory_used_mb)::float8 AS peak_memory_mb,
                   (SELECT patterns_found FROM mining_jobs l WHERE l.store_id = s.id AND l.status = 'completed'
                     ORDER BY l.completed_at DESC NULLS LAST LIMIT 1) AS last_patterns_found
              FROM (SELECT s.* FROM stores s WHERE {STORE_IN_SCOPE}
                     ORDER BY s.name, s.id LIMIT %(limit)s OFFSET %(offset)s) s
              LEFT JOIN mining_jobs j ON j.store_id = s.id
             GROUP BY s.id, s.name ORDER BY s.name, s.id""", p))
    return Page(total, limit, offset, items).as_dict()


def list_jobs(conn: psycopg.Connection, scope: Scope, *, limit: int = 50, offset: int = 0) -> dict:
    """Jobs in scope, newest first: store, status, engine path, window, transactions, time (s), peak
    memory (MB), patterns found, error."""
    check_page(limit, offset)
    p = {**scope.params(), "limit": limit, "offset": offset}
    where = STORE_IN_SCOPE
    total = conn.execute(f"SELECT count(*) FROM mining_jobs j JOIN stores s ON s.id = j.store_id WHERE {where}",
                         p).fetchone()[0]
    items = rows(conn.execute(
        f"""SELECT j.id AS job_id, j.store_id, s.name AS store_name, j.status, j.engine_path, j.window_start,
                   j.window_end, j.n_transactions, j.started_at, j.completed_at,
                   j.execution_time_seconds::float8 AS execution_time_seconds,
                   j.memory_used_mb::float8 AS memory_used_mb, j.patterns_found, j.min_utility::float8 AS min_utility,
                   j.error_message
              FROM mining_jobs j JOIN stores s ON s.id = j.store_id WHERE {where}
             ORDER BY j.started_at DESC NULLS FIRST, j.id LIMIT %(limit)s OFFSET %(offset)s""", p))
    return Page(total, limit, offset, items).as_dict()
