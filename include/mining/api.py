"""Python API of the HUI mining engine.

Semantics (the contract of issue 14, see docs/mining.md):

* a transaction is ``(items, quantities, unit_utilities)``: item names (``str``) and exact numbers
  (``int``, ``decimal.Decimal`` or their ``str`` form; binary floats are refused). The utility of an
  item in a transaction is ``quantity * unit_utility``, computed exactly; a name repeated inside one
  transaction is one item whose utilities are added;
* ``utility(X)`` = sum over the transactions holding every item of X of the utilities of X's items
  there; ``support_count`` = number of those transactions; ``support`` = support_count /
  n_transactions; ``confidence`` = all-confidence = support_count / largest support_count of a
  single item of X;
* the result is every itemset X occurring in at least one transaction with
  ``utility >= min_utility``, ``support >= min_support`` and ``len(X) <= max_pattern_length``.

Exactness: decimals become integers scaled by ``10**scale`` where ``scale`` is the largest number of
decimal places of any item utility in the data (trailing zeros ignored); the engine works on
unsigned 64-bit integers and refuses (``UtilityOverflow``) data whose total utility does not fit,
so no sum in the search can overflow. ``min_utility`` is compared exactly (it is rounded up to the
scale's grid, which is exact because every utility lies on that grid).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import huim_engine as _native

InputError = _native.InputError
TooManyPatterns = _native.TooManyPatterns
UtilityOverflow = _native.UtilityOverflow

_U64_MAX = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Pattern:
    """One high-utility itemset. Field names are the columns of ``local_patterns``."""

    items: tuple[str, ...]
    utility: int | Decimal
    support: float
    support_count: int
    confidence: float
    pattern_length: int

    @property
    def length(self) -> int:
        return self.pattern_length


@dataclass(frozen=True)
class MiningStats:
    """Figures for the DAG's logs."""

    n_transactions: int
    n_items: int
    n_promising_items: int
    n_merged_transactions: int
    algorithm: str
    candidates: int
    nodes_indexed: int
    nodes_scanned: int
    max_depth: int
    patterns: int
    scale: int
    load_seconds: float
    mine_seconds: float
    min_utility_scaled: int
    min_support_count: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MiningResult:
    patterns: list[Pattern]
    stats: MiningStats = field(repr=False)


def _to_fraction(x: Any, what: str) -> Fraction:
    if isinstance(x, bool):
        raise TypeError(f"{what} must be a number, not bool")
    if isinstance(x, (int, Decimal, Fraction)):
        if isinstance(x, Decimal) and not x.is_finite():
            raise ValueError(f"{what} must be finite, got {x}")
        return Fraction(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{what} must be finite, got {x}")
        return Fraction(Decimal(repr(x)))  # the literal the caller wrote, not the binary value
    if isinstance(x, str):
        try:
            d = Decimal(x.strip())
        except Exception:
            raise ValueError(f"{what} {x!r} is not a number") from None
        if not d.is_finite():
            raise ValueError(f"{what} must be finite, got {x!r}")
        return Fraction(d)
    raise TypeError(f"{what} must be int, Decimal or str, not {type(x).__name__}")


def scaled_min_utility(min_utility: Any, scale: int) -> int:
    """Smallest scaled integer utility that meets ``min_utility`` (clamped to [0, 2**64-1])."""
    f = _to_fraction(min_utility, "min_utility")
    v = math.ceil(f * 10**scale)
    return min(max(v, 0), _U64_MAX)


def min_support_count(min_support: Any, n_transactions: int) -> int:
    """Smallest support count c with c / n_transactions >= min_support (at least 1)."""
    f = _to_fraction(min_support, "min_support")
    if f < 0 or f > 1:
        raise ValueError(f"min_support must be between 0 and 1, got {min_support}")
    return max(1, math.ceil(f * n_transactions))


def _check_max_len(max_pattern_length: int | None) -> None:
    if max_pattern_length is None:
        return
    if isinstance(max_pattern_length, bool) or not isinstance(max_pattern_length, int):
        raise TypeError("max_pattern_length must be an int or None")
    if max_pattern_length < 1:
        raise ValueError(f"max_pattern_length must be at least 1, got {max_pattern_length}")


class Miner:
    """Transaction store + search. Transactions are held by the compiled core in flat arrays
    (no Python object per transaction), so a DAG can feed database rows batch by batch::

        miner = Miner()
        for batch in cursor_batches:            # rows: (items, quantities, unit_utilities)
            miner.add_rows(batch)
        result = miner.mine(min_utility=..., min_support=..., max_pattern_length=5)
        log.info(result.stats.as_dict())
    """

    def __init__(self) -> None:
        self._engine = _native.Engine()

    @classmethod
    def from_spmf(cls, path: str) -> Miner:
        """Read an SPMF utility file (``items:TU:utilities``; ``.gz`` accepted). Item names are the
        integers of the file. Raises ``InputError`` naming file, line and problem."""
        m = cls.__new__(cls)
        m._engine = _native.Engine.from_spmf(str(path))
        return m

    def add(self, items: Sequence[str], quantities: Sequence[Any], unit_utilities: Sequence[Any]) -> None:
        self._engine.add(items, quantities, unit_utilities)

    def add_rows(self, rows: Iterable[Sequence[Any]]) -> int:
        """Add rows ``(items, quantities, unit_utilities, ...)`` (extra fields ignored)."""
        return self._engine.add_rows(rows)

    def add_batch(
        self,
        items_flat: Sequence[str],
        offsets: Sequence[int],
        quantities_flat: Sequence[Any],
        unit_utilities_flat: Sequence[Any],
    ) -> int:
        """Add transactions given flat: transaction t is ``items_flat[offsets[t]:offsets[t+1]]``."""
        return self._engine.add_flat(list(items_flat), list(offsets), quantities_flat, unit_utilities_flat)

    @property
    def n_transactions(self) -> int:
        return self._engine.n_transactions

    @property
    def n_items(self) -> int:
        return self._engine.n_items

    @property
    def scale(self) -> int:
        return self._engine.scale

    def search(
        self,
        min_utility: Any,
        min_support: Any = 0.0,
        max_pattern_length: int | None = None,
        use_pruning: bool = True,
        max_patterns: int | None = None,
        projection: str = "auto",
        *,
        required_item: str | None = None,
    ) -> tuple[Any, MiningStats]:
        """Run the search; returns the native result (fast writer) and the statistics.

        ``required_item``: only the patterns holding this item (the search skips every sub-tree
        that cannot hold it; same patterns, same order as filtering the full result)."""
        _check_max_len(max_pattern_length)
        if max_patterns is not None and max_patterns < 0:
            raise ValueError("max_patterns must be >= 0")
        eng = self._engine
        mu = scaled_min_utility(min_utility, eng.scale)
        ms = min_support_count(min_support, eng.n_transactions)
        res = eng.mine(mu, ms, max_pattern_length, bool(use_pruning), max_patterns, projection,
                       None if required_item is None else str(required_item))
        s = res.stats()
        stats = MiningStats(
            n_transactions=s["n_transactions"],
            n_items=s["n_items"],
            n_promising_items=s["n_promising_items"],
            n_merged_transactions=s["n_merged_transactions"],
            algorithm=s["algorithm"],
            candidates=s["candidates"],
            nodes_indexed=s["nodes_indexed"],
            nodes_scanned=s["nodes_scanned"],
            max_depth=s["max_depth"],
            patterns=s["patterns"],
            scale=s["scale"],
            load_seconds=eng.load_seconds,
            mine_seconds=s["mine_seconds"],
            min_utility_scaled=mu,
            min_support_count=ms,
        )
        return res, stats

    def mine(
        self,
        min_utility: Any,
        min_support: Any = 0.0,
        max_pattern_length: int | None = None,
        use_pruning: bool = True,
        max_patterns: int | None = None,
        *,
        required_item: str | None = None,
    ) -> MiningResult:
        res, stats = self.search(min_utility, min_support, max_pattern_length, use_pruning, max_patterns,
                                 required_item=required_item)
        return MiningResult(_patterns(self._engine, res), stats)


def _patterns(eng: Any, res: Any) -> list[Pattern]:
    items_flat, offsets, utils, sups, maxsups = res.arrays()
    names = eng.item_names()
    n = eng.n_transactions
    scale = res.scale
    out: list[Pattern] = []
    append = out.append
    if scale:
        q = Decimal(1).scaleb(-scale)
        conv = lambda u: (Decimal(u) * q)  # noqa: E731  exact: at most 20 digits
    else:
        conv = int
    for p in range(len(utils)):
        s, e = offsets[p], offsets[p + 1]
        sc = sups[p]
        append(
            Pattern(
                items=tuple([names[i] for i in items_flat[s:e]]),
                utility=conv(utils[p]),
                support=sc / n,
                support_count=sc,
                confidence=sc / maxsups[p],
                pattern_length=e - s,
            )
        )
    return out


def mine(
    transactions: Iterable[Sequence[Any]],
    min_utility: Any,
    min_support: Any = 0.0,
    max_pattern_length: int | None = None,
    use_pruning: bool = True,
    *,
    max_patterns: int | None = None,
) -> list[Pattern]:
    """All high-utility itemsets of ``transactions`` (each ``(items, quantities, unit_utilities)``),
    in the engine's deterministic order (depth-first, items by TWU ascending then name)."""
    m = Miner()
    m.add_rows(transactions)
    return m.mine(min_utility, min_support, max_pattern_length, use_pruning, max_patterns).patterns


def mine_batches(
    batches: Iterable[Iterable[Sequence[Any]]],
    min_utility: Any,
    min_support: Any = 0.0,
    max_pattern_length: int | None = None,
    use_pruning: bool = True,
    *,
    max_patterns: int | None = None,
) -> MiningResult:
    """Like :func:`mine`, for an iterator of batches of rows (e.g. ``cursor.fetchmany(batch_size)``
    in a loop); no Python object is kept per transaction. Returns patterns and statistics."""
    m = Miner()
    for batch in batches:
        m.add_rows(batch)
    return m.mine(min_utility, min_support, max_pattern_length, use_pruning, max_patterns)
