"""Parameters of a mining run: what the DAG's trigger form asks (:class:`RunRequest`), the platform
defaults in ``server_configs`` (:class:`MiningSettings`), and their resolution per store into the
values stored on the ``mining_jobs`` row (:func:`resolve_thresholds`), with the up-front guard rails.

Resolution, per store (its window's transactions known):

* ``min_utility``: the run's absolute ``min_utility``; else ``min_utility_ratio`` x the store's total
  utility in the window; else ``server_configs.min_utility_threshold`` when > 0; else
  ``mining_default_min_utility_ratio`` x the total utility. Giving both ``min_utility`` and
  ``min_utility_ratio`` is an error.
* ``min_support``: the run's, else ``server_configs.min_support_threshold``.
* ``max_pattern_length``: the run's (``0`` = no cap), else ``server_configs.max_pattern_length`` when
  > 0, else ``mining_default_max_pattern_length`` (5). ``server_configs.max_pattern_length`` > 0 is
  also the platform maximum: a run asking for more (or for no cap) is rejected.
* ``max_patterns`` / ``memory_budget_mb``: the run's, else ``max_patterns_per_job`` /
  ``mining_memory_budget_mb``.
* ``min_utility`` of 0 with no length cap is rejected (it asks for every itemset of the store).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from include.mine.errors import ParameterError

ENGINES = ("auto", "local", "spark")

# server_configs keys read by the mining runs (0007 and 0200 insert them)
CONFIG_DEFAULTS: dict[str, Decimal] = {
    "min_utility_threshold": Decimal(0),
    "min_support_threshold": Decimal(0),
    "max_pattern_length": Decimal(0),
    "mining_default_min_utility_ratio": Decimal("0.01"),
    "mining_default_max_pattern_length": Decimal(5),
    "spark_threshold_transactions": Decimal(500000),
    "max_patterns_per_job": Decimal(1000000),
    "mining_memory_budget_mb": Decimal(4096),
    "spark_partitions_per_core": Decimal(4),
}


def _dec(value: Any, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    try:
        d = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if not d.is_finite():
        raise ParameterError(f"{name} must be finite, got {value!r}")
    return d


def _int(value: Any, name: str, minimum: int) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be an integer, got {value!r}") from None
    if v < minimum:
        raise ParameterError(f"{name} must be at least {minimum}, got {v}")
    return v


def _ts(value: Any, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        d = value
    else:
        try:
            d = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ParameterError(f"{name} must be an ISO 8601 date-time, got {value!r}") from None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class RunRequest:
    """What a run asks for (the DAG Params); ``None`` means "the platform default"."""

    store_ids: tuple[str, ...] = ()
    min_utility: Decimal | None = None
    min_utility_ratio: Decimal | None = None
    min_support: Decimal | None = None
    max_pattern_length: int | None = None  # 0 = no cap
    use_pruning: bool = True
    batch_size: int = 1000
    window_start: datetime | None = None
    window_end: datetime | None = None
    engine: str = "auto"
    max_patterns: int | None = None
    memory_budget_mb: int | None = None

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> RunRequest:
        """Validate a dict of DAG Params (unknown keys ignored); errors name the parameter."""
        import uuid

        store_ids = []
        for s in p.get("store_ids") or []:
            try:
                store_ids.append(str(uuid.UUID(str(s))))
            except ValueError:
                raise ParameterError(f"store_ids: {s!r} is not a store id (UUID)") from None
        req = cls(
            store_ids=tuple(dict.fromkeys(store_ids)),
            min_utility=_dec(p.get("min_utility"), "min_utility"),
            min_utility_ratio=_dec(p.get("min_utility_ratio"), "min_utility_ratio"),
            min_support=_dec(p.get("min_support"), "min_support"),
            max_pattern_length=_int(p.get("max_pattern_length"), "max_pattern_length", 0),
            use_pruning=bool(p.get("use_pruning", True)),
            batch_size=_int(p.get("batch_size"), "batch_size", 1) or 1000,
            window_start=_ts(p.get("window_start"), "window_start"),
            window_end=_ts(p.get("window_end"), "window_end"),
            engine=str(p.get("engine") or "auto"),
            max_patterns=_int(p.get("max_patterns"), "max_patterns", 1),
            memory_budget_mb=_int(p.get("memory_budget_mb"), "memory_budget_mb", 1),
        )
        req.validate()
        return req

    def validate(self) -> None:
        if self.min_utility is not None and self.min_utility_ratio is not None:
            raise ParameterError("give min_utility (absolute) or min_utility_ratio (share of the store's total "
                                 "utility), not both")
        if self.min_utility is not None and self.min_utility < 0:
            raise ParameterError(f"min_utility must be >= 0, got {self.min_utility}")
        if self.min_utility_ratio is not None and not (0 <= self.min_utility_ratio <= 1):
            raise ParameterError(f"min_utility_ratio must be between 0 and 1, got {self.min_utility_ratio}")
        if self.min_support is not None and not (0 <= self.min_support <= 1):
            raise ParameterError(f"min_support must be a fraction between 0 and 1, got {self.min_support}")
        if self.engine not in ENGINES:
            raise ParameterError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.window_start and self.window_end and self.window_start >= self.window_end:
            raise ParameterError(f"window_start {self.window_start.isoformat()} must be before window_end "
                                 f"{self.window_end.isoformat()}")
        if (self.min_utility == 0 or self.min_utility_ratio == 0) and self.max_pattern_length == 0:
            raise ParameterError(_NO_CAP_MESSAGE)


_NO_CAP_MESSAGE = ("min_utility 0 with no max_pattern_length asks for every itemset of the store (2^items): "
                   "set min_utility or min_utility_ratio above 0, or a max_pattern_length")


@dataclass(frozen=True)
class MiningSettings:
    """The platform settings of ``server_configs`` that mining reads."""

    min_utility_threshold: Decimal = CONFIG_DEFAULTS["min_utility_threshold"]
    min_support_threshold: Decimal = CONFIG_DEFAULTS["min_support_threshold"]
    max_pattern_length: int = 0
    mining_default_min_utility_ratio: Decimal = CONFIG_DEFAULTS["mining_default_min_utility_ratio"]
    mining_default_max_pattern_length: int = 5
    spark_threshold_transactions: int = 500000
    max_patterns_per_job: int = 1000000
    mining_memory_budget_mb: int = 4096
    spark_partitions_per_core: int = 4

    @classmethod
    def load(cls, conn) -> MiningSettings:
        from include.db.configs import get_config

        kw = {}
        for f in cls.__dataclass_fields__.values():
            v = get_config(conn, f.name, CONFIG_DEFAULTS[f.name])
            kw[f.name] = int(v) if f.type in ("int", int) else Decimal(v)
        return cls(**kw)


@dataclass(frozen=True)
class Thresholds:
    """The values of one store's run (stored on its ``mining_jobs`` row)."""

    min_utility: Decimal
    min_support: Decimal
    max_pattern_length: int | None  # None = no cap
    use_pruning: bool
    batch_size: int
    max_patterns: int
    memory_budget_mb: int
    min_utility_source: str
    extra: dict = field(default_factory=dict)

    def as_params(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in list(d.items()):
            if isinstance(v, Decimal):
                d[k] = str(v)
        return d


def resolve_thresholds(req: RunRequest, cfg: MiningSettings, total_utility: Decimal) -> Thresholds:
    """The thresholds of one store's run; ``total_utility`` is the store's total in the window."""
    total = Decimal(total_utility or 0)
    if req.min_utility is not None:
        mu, src = req.min_utility, "min_utility"
    elif req.min_utility_ratio is not None:
        mu, src = req.min_utility_ratio * total, f"min_utility_ratio {req.min_utility_ratio} x total utility {total}"
    elif cfg.min_utility_threshold > 0:
        mu, src = cfg.min_utility_threshold, "server_configs.min_utility_threshold"
    else:
        r = cfg.mining_default_min_utility_ratio
        mu, src = r * total, f"server_configs.mining_default_min_utility_ratio {r} x total utility {total}"
    ms = req.min_support if req.min_support is not None else cfg.min_support_threshold
    if not (0 <= ms <= 1):
        raise ParameterError(f"min_support must be between 0 and 1, got {ms} (server_configs.min_support_threshold?)")
    cap = cfg.max_pattern_length if cfg.max_pattern_length > 0 else None
    if req.max_pattern_length is not None:
        maxlen = req.max_pattern_length or None
        if cap is not None and (maxlen is None or maxlen > cap):
            raise ParameterError(
                f"max_pattern_length {req.max_pattern_length or 'without a cap'} exceeds the platform maximum "
                f"{cap} (server_configs.max_pattern_length)")
    else:
        maxlen = cap or cfg.mining_default_max_pattern_length or None
    if mu <= 0 and maxlen is None:
        raise ParameterError(_NO_CAP_MESSAGE)
    return Thresholds(
        min_utility=mu,
        min_support=ms,
        max_pattern_length=maxlen,
        use_pruning=req.use_pruning,
        batch_size=req.batch_size,
        max_patterns=req.max_patterns or cfg.max_patterns_per_job,
        memory_budget_mb=req.memory_budget_mb or cfg.mining_memory_budget_mb,
        min_utility_source=src,
    )


def engine_path(req: RunRequest, cfg: MiningSettings, n_transactions: int) -> str:
    if req.engine != "auto":
        return req.engine
    return "spark" if n_transactions > cfg.spark_threshold_transactions else "local"


def too_many_patterns_message(max_patterns: int) -> str:
    return (f"the run found more than {max_patterns} patterns (the limit); raise the DAG Param max_patterns or "
            f"server_configs.max_patterns_per_job, or narrow the search: raise min_utility / min_support, lower "
            f"max_pattern_length")


def memory_budget_message(used_mb: float, budget_mb: float) -> str:
    return (f"the run's resident memory reached {math.ceil(used_mb)} MB, above the budget of {budget_mb} MB; raise "
            f"the DAG Param memory_budget_mb or server_configs.mining_memory_budget_mb, or narrow the search: raise "
            f"min_utility / min_support, lower max_pattern_length, or shorten the window")
