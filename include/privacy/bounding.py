"""Contribution bounding: the privacy unit is one transaction (add/remove-one).

Every transaction is transformed on its own (record-local, hence 1-stable) before anything that leaves
a store is computed from it:

1. item utilities ``quantity * unit_utility`` become fixed-point integers (``utility_scale`` units per
   currency unit, default 100 = cents), duplicate lines of one item are merged, negative utilities
   (returns, discounts) are clamped to 0;
2. only the ``max_items`` (ℓ) items of highest utility are kept (ties: smaller item name first);
3. if the kept utilities sum to more than ``utility_cap`` (C, fixed-point), every one is scaled by
   C / TU and rounded down, so the transaction utility is at most C.

After this, one transaction touches at most ℓ items and moves any utility sum by at most C, which is
what :mod:`include.privacy.sensitivity` assumes.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation

DEFAULT_UTILITY_SCALE = 100  # fixed-point units per currency unit (cents)
# Defaults from the calibration in the research brief (p95 basket length 12, p99 TU 184.2 -> 200.00).
DEFAULT_MAX_ITEMS = 12
DEFAULT_UTILITY_CAP = 20_000  # fixed-point units = 200.00


class BoundingError(ValueError):
    """A transaction or a bound is invalid; the message names the field."""


@dataclass(frozen=True)
class Transaction:
    """One transaction as stored in ``transactions`` (spec 2.2)."""

    items: tuple[str, ...]
    quantities: tuple[Decimal, ...]
    unit_utilities: tuple[Decimal, ...]
    transaction_date: datetime | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        if not (len(self.items) == len(self.quantities) == len(self.unit_utilities)):
            raise BoundingError(
                f"transaction {self.id or '?'}: items, quantities and unit_utilities differ in length "
                f"({len(self.items)}, {len(self.quantities)}, {len(self.unit_utilities)})")

    @classmethod
    def of(cls, items: Sequence[str], quantities: Sequence, unit_utilities: Sequence,
           transaction_date: datetime | None = None, id: str | None = None) -> "Transaction":
        return cls(tuple(str(i) for i in items), tuple(_dec(q, "quantities", id) for q in quantities),
                   tuple(_dec(u, "unit_utilities", id) for u in unit_utilities), transaction_date,
                   None if id is None else str(id))

    @property
    def basket_length(self) -> int:
        """Number of distinct items."""
        return len(set(self.items))


@dataclass(frozen=True)
class Bounds:
    """(ℓ, C) and the fixed-point scale; platform settings ``privacy_max_items``,
    ``privacy_utility_cap`` (in currency units) and ``privacy_utility_scale`` in ``server_configs``."""

    max_items: int = DEFAULT_MAX_ITEMS
    utility_cap: int = DEFAULT_UTILITY_CAP
    utility_scale: int = DEFAULT_UTILITY_SCALE

    def __post_init__(self) -> None:
        for name in ("max_items", "utility_cap", "utility_scale"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise BoundingError(f"{name} must be a positive integer, got {v!r}")

    @classmethod
    def from_currency(cls, max_items: int, utility_cap, utility_scale: int = DEFAULT_UTILITY_SCALE
                      ) -> "Bounds":
        """``utility_cap`` in currency units (e.g. ``200`` or ``"200.00"``)."""
        return cls(int(max_items), to_fixed_point(utility_cap, utility_scale), int(utility_scale))

    @property
    def utility_cap_currency(self) -> Decimal:
        return Decimal(self.utility_cap) / self.utility_scale


@dataclass(frozen=True)
class BoundedTransaction:
    """A clipped transaction: canonical (sorted) item names with fixed-point utilities, sum ≤ C."""

    items: tuple[str, ...]
    utilities: tuple[int, ...]

    @property
    def total_utility(self) -> int:
        return sum(self.utilities)

    def utility_of(self, itemset: Iterable[str]) -> int | None:
        """u(X, T) if X ⊆ T, else None."""
        pos = {i: k for k, i in enumerate(self.items)}
        total = 0
        for i in itemset:
            k = pos.get(i)
            if k is None:
                return None
            total += self.utilities[k]
        return total


def _dec(v, field: str, tid=None) -> Decimal:
    if isinstance(v, Decimal):
        d = v
    elif isinstance(v, float):
        d = Decimal(repr(v))
    else:
        try:
            d = Decimal(str(v).strip())
        except InvalidOperation:
            raise BoundingError(f"transaction {tid or '?'}: {field} value {v!r} is not a number") from None
    if not d.is_finite():
        raise BoundingError(f"transaction {tid or '?'}: {field} value {v!r} is not finite")
    return d


def to_fixed_point(value, utility_scale: int = DEFAULT_UTILITY_SCALE) -> int:
    """``value`` (currency units) as an integer number of 1/utility_scale units, half-even rounding."""
    d = _dec(value, "utility")
    return int((d * utility_scale).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_fixed_point(units: int, utility_scale: int = DEFAULT_UTILITY_SCALE) -> Decimal:
    return Decimal(int(units)) / Decimal(utility_scale)


def item_utilities(tx: Transaction, utility_scale: int = DEFAULT_UTILITY_SCALE) -> dict[str, int]:
    """Fixed-point utility per distinct item (duplicate lines merged, negatives clamped to 0)."""
    out: dict[str, int] = {}
    for item, q, p in zip(tx.items, tx.quantities, tx.unit_utilities):
        if item == "":
            raise BoundingError(f"transaction {tx.id or '?'}: empty item name")
        u = int((q * p * utility_scale).to_integral_value(rounding=ROUND_HALF_EVEN))
        out[item] = out.get(item, 0) + u
    return {i: max(u, 0) for i, u in out.items()}


def bound_transaction(tx: Transaction, bounds: Bounds) -> BoundedTransaction:
    """Keep the ℓ highest-utility items, then scale down (floor) so the total is at most C."""
    utils = item_utilities(tx, bounds.utility_scale)
    kept = sorted(utils.items(), key=lambda kv: (-kv[1], kv[0]))[: bounds.max_items]
    total = sum(u for _, u in kept)
    if total > bounds.utility_cap:
        kept = [(i, (u * bounds.utility_cap) // total) for i, u in kept]
    kept.sort(key=lambda kv: kv[0])
    return BoundedTransaction(tuple(i for i, _ in kept), tuple(u for _, u in kept))


def bound_transactions(txs: Iterable[Transaction], bounds: Bounds) -> list[BoundedTransaction]:
    return [bound_transaction(t, bounds) for t in txs]


# --------------------------------------------------------------------------------------------------
# Suggested defaults for ℓ and C
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoundsSuggestion:
    """ℓ = p95 of basket length, C = p99 of transaction utility (rounded up to a whole currency unit)."""

    max_items: int
    utility_cap: int              # fixed-point
    utility_scale: int
    n_transactions: int
    basket_length_p50: int
    basket_length_p95: int
    basket_length_p99: int
    transaction_utility_p50: int  # fixed-point
    transaction_utility_p95: int
    transaction_utility_p99: int
    clipped_share: float          # fraction of transactions with more than ℓ items or utility above C

    def bounds(self) -> Bounds:
        return Bounds(self.max_items, self.utility_cap, self.utility_scale)

    def as_dict(self) -> dict:
        s = self.utility_scale
        return {
            "privacy_max_items": self.max_items,
            "privacy_utility_cap": str(from_fixed_point(self.utility_cap, s)),
            "privacy_utility_scale": s,
            "n_transactions": self.n_transactions,
            "basket_length": {"p50": self.basket_length_p50, "p95": self.basket_length_p95,
                              "p99": self.basket_length_p99},
            "transaction_utility": {"p50": str(from_fixed_point(self.transaction_utility_p50, s)),
                                    "p95": str(from_fixed_point(self.transaction_utility_p95, s)),
                                    "p99": str(from_fixed_point(self.transaction_utility_p99, s))},
            "clipped_share": round(self.clipped_share, 6),
        }


def nearest_rank(sorted_values: Sequence[int], q: float) -> int:
    """The nearest-rank percentile (q in (0, 100]) of an ascending, non-empty sequence."""
    if not sorted_values:
        raise BoundingError("no transactions to compute a percentile from")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def suggest_bounds(txs: Iterable[Transaction], utility_scale: int = DEFAULT_UTILITY_SCALE,
                   length_percentile: float = 95.0, utility_percentile: float = 99.0) -> BoundsSuggestion:
    """Suggest ℓ and C from (historic, non-sensitive) transactions.

    Picking ℓ and C from the very data being released leaks a little about it: run this on an earlier
    period (e.g. last quarter), not on the window of the round.
    """
    lengths: list[int] = []
    totals: list[int] = []
    for t in txs:
        u = item_utilities(t, utility_scale)
        lengths.append(len(u))
        totals.append(sum(u.values()))
    if not lengths:
        raise BoundingError("no transactions to suggest bounds from")
    pairs = list(zip(lengths, totals))
    lengths.sort()
    totals.sort()
    ell = max(1, nearest_rank(lengths, length_percentile))
    p99 = nearest_rank(totals, utility_percentile)
    # round C up to a whole currency unit, at least one unit
    cap = max(utility_scale, int((Decimal(p99) / utility_scale).to_integral_value(ROUND_CEILING)) * utility_scale)
    clipped = sum(1 for n, tu in pairs if n > ell or tu > cap) / len(pairs)
    return BoundsSuggestion(
        max_items=ell, utility_cap=cap, utility_scale=utility_scale, n_transactions=len(lengths),
        basket_length_p50=nearest_rank(lengths, 50), basket_length_p95=nearest_rank(lengths, 95),
        basket_length_p99=nearest_rank(lengths, 99),
        transaction_utility_p50=nearest_rank(totals, 50), transaction_utility_p95=nearest_rank(totals, 95),
        transaction_utility_p99=p99, clipped_share=clipped)
