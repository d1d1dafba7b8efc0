"""The retention rules of spec 4.1 as data: periods from ``server_configs`` and the cutoffs of a run.

Every cutoff is derived from ``as_of`` (a date, UTC): ``as_of 00:00 UTC - N days``. Rows strictly
before a cutoff are past their rule. Running with a later ``as_of`` is "time travel": the same rules
applied as on that day.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

# server_configs keys (migration 0007) and their defaults (spec 4.1)
CONFIG_KEYS = {
    "transactions_days": ("retention_transactions_days", 730),
    "activity_logs_days": ("retention_activity_logs_days", 365),
    "metrics_detail_days": ("retention_performance_metrics_detail_days", 183),
    "metrics_rollup_days": ("retention_performance_metrics_rollup_days", 730),
    "local_patterns_days": ("retention_local_patterns_days", 365),
}


@dataclass(frozen=True)
class RetentionPolicy:
    transactions_days: int = 730
    activity_logs_days: int = 365
    metrics_detail_days: int = 183
    metrics_rollup_days: int = 730
    local_patterns_days: int = 365

    def __post_init__(self) -> None:
        for name in CONFIG_KEYS:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"retention period {name} must be a positive number of days, got {v!r}")

    @classmethod
    def from_configs(cls, configs: dict[str, Any]) -> "RetentionPolicy":
        """From ``include.db.configs.get_configs`` output; a missing key keeps the spec's default."""
        kw = {}
        for name, (key, default) in CONFIG_KEYS.items():
            v = configs.get(key, default)
            try:
                if isinstance(v, bool) or Decimal(str(v)) != int(Decimal(str(v))):
                    raise ValueError
                kw[name] = int(Decimal(str(v)))
            except (TypeError, ValueError, ArithmeticError):
                raise ValueError(f"server_configs.{key} must be a whole number of days, got {v!r}") from None
        return cls(**kw)

    def cutoffs(self, as_of: date) -> "Cutoffs":
        t0 = as_of_instant(as_of)
        return Cutoffs(
            as_of=as_of,
            as_of_ts=t0,
            transactions=t0 - timedelta(days=self.transactions_days),
            activity_logs=t0 - timedelta(days=self.activity_logs_days),
            metrics_detail=t0 - timedelta(days=self.metrics_detail_days),
            metrics_rollup=t0 - timedelta(days=self.metrics_rollup_days),
            local_patterns=t0 - timedelta(days=self.local_patterns_days),
            # a mining job "before this run" completed on or before the as_of day
            mining_seen_before=t0 + timedelta(days=1),
        )


@dataclass(frozen=True)
class Cutoffs:
    as_of: date
    as_of_ts: datetime
    transactions: datetime
    activity_logs: datetime
    metrics_detail: datetime
    metrics_rollup: datetime
    local_patterns: datetime
    mining_seen_before: datetime

    def as_dict(self) -> dict[str, str]:
        return {k: (v.isoformat()) for k, v in self.__dict__.items()}


def as_of_instant(as_of: date) -> datetime:
    return datetime.combine(as_of, time(0), tzinfo=timezone.utc)


def parse_as_of(value: str | date | None) -> date:
    """``None``/''/'today' -> today's UTC date; 'YYYY-MM-DD' -> that date (clear error otherwise)."""
    if value is None or value == "" or value == "today":
        return datetime.now(timezone.utc).date()
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ValueError(f"as_of must be a date YYYY-MM-DD (or empty for today), got {value!r}") from None
