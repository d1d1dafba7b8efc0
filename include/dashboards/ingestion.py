"""Ingestion dashboard: files per status and store, rows loaded and rejected over time (the loader's
``performance_metrics``, metric_type ``ingestion``), the latest errors with the rejects link."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg

from include.dashboards import STORE_IN_SCOPE, Invalid, Page, Scope, check_page, rows

STATUSES = ("pending", "processing", "completed", "failed")
REJECTS_PATH = "/platform/v1/stores/{store_id}/files/{file_id}/rejects"   # the platform API's route (issue 12)


def files_by_status(conn: psycopg.Connection, scope: Scope, *, limit: int = 50, offset: int = 0) -> dict:
    """Per store in scope (by name): the count of files per ``processing_status``; ``totals`` over all
    stores in scope."""
    check_page(limit, offset)
    p = {**scope.params(), "limit": limit, "offset": offset}
    total = conn.execute(f"SELECT count(*) FROM stores s WHERE {STORE_IN_SCOPE}", p).fetchone()[0]
    counts = ", ".join(f"count(f.id) FILTER (WHERE f.processing_status = '{st}')::int AS {st}" for st in STATUSES)
    items = rows(conn.execute(
        f"""SELECT s.id AS store_id, s.name, {counts}, count(f.id)::int AS files
              FROM (SELECT s.* FROM stores s WHERE {STORE_IN_SCOPE}
                     ORDER BY s.name, s.id LIMIT %(limit)s OFFSET %(offset)s) s
              LEFT JOIN transaction_files f ON f.store_id = s.id
             GROUP BY s.id, s.name ORDER BY s.name, s.id""", p))
    totals = dict(conn.execute(
        f"""SELECT f.processing_status, count(*)::int FROM transaction_files f JOIN stores s ON s.id = f.store_id
             WHERE {STORE_IN_SCOPE} GROUP BY f.processing_status""", p).fetchall())
    return {**Page(total, limit, offset, items).as_dict(), "totals": {st: totals.get(st, 0) for st in STATUSES}}


def rows_over_time(conn: psycopg.Connection, scope: Scope, *, days: int = 30, bucket: str = "day",
                   now: datetime | None = None) -> dict:
    """Transactions loaded and rejected per ``bucket`` (hour | day) over the last ``days`` days, summed
    over the stores in scope; buckets without loads are omitted."""
    if bucket not in ("hour", "day"):
        raise Invalid(f"bucket must be hour or day, got {bucket!r}")
    if not 1 <= days <= 3660:
        raise Invalid(f"days must be between 1 and 3660, got {days}")
    since = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    p = {**scope.params(), "bucket": bucket, "since": since}
    points = rows(conn.execute(
        f"""SELECT date_trunc(%(bucket)s, m.recorded_at) AS at,
                   COALESCE(sum(m.metric_value) FILTER (WHERE m.metric_name = 'rows_loaded'), 0)::bigint AS rows_loaded,
                   COALESCE(sum(m.metric_value) FILTER (WHERE m.metric_name = 'rows_rejected'), 0)::bigint AS rows_rejected
              FROM performance_metrics m JOIN stores s ON s.id = m.store_id
             WHERE m.metric_type = 'ingestion' AND m.metric_name IN ('rows_loaded', 'rows_rejected')
               AND m.recorded_at >= %(since)s AND {STORE_IN_SCOPE}
             GROUP BY 1 ORDER BY 1""", p))
    return {"bucket": bucket, "days": days, "points": points}


def latest_errors(conn: psycopg.Connection, scope: Scope, *, limit: int = 20, offset: int = 0) -> dict:
    """Files with an ``error_message`` (failed, or completed with rejected transactions), newest first,
    with the rows loaded/rejected the loader recorded and ``rejects_url`` (the platform API's route)
    when transactions were rejected."""
    check_page(limit, offset)
    p = {**scope.params(), "limit": limit, "offset": offset}
    where = f"f.error_message IS NOT NULL AND {STORE_IN_SCOPE}"
    total = conn.execute(f"SELECT count(*) FROM transaction_files f JOIN stores s ON s.id = f.store_id WHERE {where}",
                         p).fetchone()[0]
    items = rows(conn.execute(
        f"""SELECT f.id AS file_id, f.store_id, s.name AS store_name, f.filename, f.processing_status,
                   f.upload_timestamp, f.error_message, m.rows_loaded, m.rows_rejected
              FROM (SELECT f.* FROM transaction_files f JOIN stores s ON s.id = f.store_id WHERE {where}
                     ORDER BY f.upload_timestamp DESC NULLS LAST, f.id LIMIT %(limit)s OFFSET %(offset)s) f
              JOIN stores s ON s.id = f.store_id
              LEFT JOIN LATERAL (
                   SELECT max(metric_value) FILTER (WHERE metric_name = 'rows_loaded')::bigint AS rows_loaded,
                          max(metric_value) FILTER (WHERE metric_name = 'rows_rejected')::bigint AS rows_rejected
                     FROM performance_metrics pm
                    WHERE pm.store_id = f.store_id AND pm.metric_type = 'ingestion'
                      AND pm.metadata->>'file_id' = f.id::text) m ON true
             ORDER BY f.upload_timestamp DESC NULLS LAST, f.id""", p))
    for it in items:
        it["rejects_url"] = (REJECTS_PATH.format(store_id=it["store_id"], file_id=it["file_id"])
                             if (it["rows_rejected"] or 0) > 0 else None)
    return Page(total, limit, offset, items).as_dict()
