"""``performance_metrics`` (spec 2.7), its hourly/daily rollup, and the time-series maintenance that the
retention DAG calls. Works on both paths of migration 0002 (TimescaleDB or native partitions)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable

import psycopg

from include.db.bulk import copy_rows
from psycopg.types.json import Jsonb

TIMESERIES_TABLES = ("activity_logs", "performance_metrics")


@dataclass(frozen=True)
class Metric:
    metric_type: str
    metric_name: str
    metric_value: Decimal
    store_id: uuid.UUID | None = None
    round_id: uuid.UUID | None = None
    recorded_at: datetime | None = None
    metadata: dict[str, Any] | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def record_metric(conn: psycopg.Connection, metric_type: str, metric_name: str, metric_value: Decimal | float | int,
                  *, store_id: uuid.UUID | None = None, round_id: uuid.UUID | None = None,
                  metadata: dict[str, Any] | None = None, recorded_at: datetime | None = None) -> uuid.UUID:
    return conn.execute(
        """INSERT INTO performance_metrics (metric_type, metric_name, metric_value, store_id, round_id, metadata,
                                            recorded_at)
           VALUES (%s, %s, %s, %s, %s, %s, COALESCE(%s, now())) RETURNING id""",
        (metric_type, metric_name, Decimal(str(metric_value)), store_id, round_id,
         Jsonb(metadata) if metadata is not None else None, recorded_at)).fetchone()[0]


def copy_metrics(conn: psycopg.Connection, metrics: Iterable[Metric]) -> int:
    now = datetime.now().astimezone()
    return copy_rows(conn, "performance_metrics",
                     ("id", "metric_type", "metric_name", "metric_value", "store_id", "round_id", "recorded_at",
                      "metadata"),
                     ("uuid", "text", "text", "numeric", "uuid", "uuid", "timestamptz", "jsonb"),
                     ((m.id, m.metric_type, m.metric_name, Decimal(str(m.metric_value)), m.store_id, m.round_id,
                       m.recorded_at or now, Jsonb(m.metadata) if m.metadata is not None else None)
                      for m in metrics))


def timeseries_backend(conn: psycopg.Connection) -> str:
    """'native' (monthly range partitions) or 'timescaledb'."""
    return conn.execute("SELECT timeseries_backend()").fetchone()[0]


def _check(table: str) -> None:
    if table not in TIMESERIES_TABLES:
        raise ValueError(f"table must be one of {TIMESERIES_TABLES}, got {table!r}")


def partitions(conn: psycopg.Connection, table: str) -> list[tuple[str, datetime | None, datetime | None, bool]]:
    """(name, range_start, range_end, is_default) of the table's partitions or chunks."""
    _check(table)
    return conn.execute("SELECT * FROM timeseries_partitions(%s)", (table,)).fetchall()


def create_partitions(conn: psycopg.Connection, table: str, start: datetime, end: datetime) -> list[str]:
    """Monthly partitions covering [start, end) (rows waiting in the DEFAULT partition are moved in)."""
    _check(table)
    return [r[0] for r in conn.execute("SELECT timeseries_create_partitions(%s, %s, %s)", (table, start, end))]


def maintain(conn: psycopg.Connection, *, months_back: int = 1, months_ahead: int = 3) -> list[str]:
    """Nightly: create partitions ahead and refresh the rollup of the last two days; returns partitions created."""
    return [r[0] for r in conn.execute("SELECT timeseries_maintain(%s, %s)", (months_back, months_ahead))]


def drop_partitions_before(conn: psycopg.Connection, table: str, cutoff: datetime) -> list[str]:
    """Drop partitions/chunks entirely before ``cutoff`` and DEFAULT-partition rows before it. Archive first."""
    _check(table)
    return [r[0] for r in conn.execute("SELECT timeseries_drop_partitions_before(%s, %s)", (table, cutoff))]


def refresh_rollup(conn: psycopg.Connection, start: datetime, end: datetime) -> int:
    """Recompute hourly and daily aggregates of the UTC days overlapping [start, end); rows written."""
    return conn.execute("SELECT performance_metrics_rollup_refresh(%s, %s)", (start, end)).fetchone()[0]


def purge_rollup(conn: psycopg.Connection, cutoff: datetime) -> int:
    return conn.execute("SELECT performance_metrics_rollup_purge(%s)", (cutoff,)).fetchone()[0]
