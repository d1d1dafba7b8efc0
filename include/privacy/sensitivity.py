"""Sensitivities of a release over a public family of itemsets, from (ℓ, C, sizes).

Neighbouring databases differ by adding or removing one (bounded) transaction T: T has at most ℓ items,
non-negative fixed-point utilities, and total utility at most C (see :mod:`include.privacy.bounding`).
For a public candidate family F of itemsets whose sizes lie in ``sizes`` (e.g. ``(1, 2, 3)`` for
"size ≤ 3", or ``(2,)`` for one level of a level-wise round), the released vectors are

* utility  V[X] = Σ_T u(X, T)   (u(X, T) = Σ_{i∈X} u(i, T) when X ⊆ T, else 0)
* support  N[X] = Σ_T 1[X ⊆ T]
* presence P[X] = 1[∃T: X ⊆ T]  (the store's bit; summed over stores by the coordinator)

and T changes only the coordinates X ⊆ T:

| vector   | L∞ | L1                              | L2²                         |
|----------|----|---------------------------------|-----------------------------|
| utility  | C  | C · Σ_{j∈sizes} binom(ℓ−1, j−1) | C² · Σ_{j∈sizes} binom(ℓ−1, j−1) |
| support  | 1  | Σ_{j∈sizes} binom(ℓ, j)         | = L1                         |
| presence | 1  | Σ_{j∈sizes} binom(ℓ, j)         | = L1                         |

Utility L1: item i of T adds u(i, T) to every candidate X ⊆ T that contains it, and there are
Σ_j binom(ℓ−1, j−1) of those; summing over items gives at most C·Σ_j binom(ℓ−1, j−1).
Utility L2: Σ_X u(X,T)² ≤ max_X u(X,T) · Σ_X u(X,T) ≤ C · L1; tight when one item carries all of C.
All three bounds are attained by some transaction, so they cannot be lowered without changing the
bounding (tests check both directions by brute force).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

FIELDS = ("utility", "support", "presence")


@dataclass(frozen=True)
class Sensitivity:
    """Exact integer L1, L2² and L∞ sensitivities of one integer vector."""

    l1: int
    l2_squared: int
    linf: int

    @property
    def l2(self) -> float:
        """√(L2²) rounded *up* to the next float, so it is never below the exact value."""
        return sqrt_up(self.l2_squared)

    def as_dict(self) -> dict:
        return {"l1": self.l1, "l2": self.l2, "l2_squared": self.l2_squared, "linf": self.linf}


def sqrt_up(n: int) -> float:
    """Smallest float r with r ≥ √n (exact comparison)."""
    if n < 0:
        raise ValueError("negative")
    r = math.sqrt(n)
    while Fraction(r) * Fraction(r) < n:
        r = math.nextafter(r, math.inf)
    return r


def normalize_sizes(sizes: int | Iterable[int]) -> tuple[int, ...]:
    """``3`` means sizes 1..3; an iterable is taken as the exact set of sizes."""
    if isinstance(sizes, int):
        if sizes < 1:
            raise ValueError(f"max_pattern_length must be ≥ 1, got {sizes}")
        return tuple(range(1, sizes + 1))
    out = tuple(sorted(set(int(s) for s in sizes)))
    if not out or out[0] < 1:
        raise ValueError(f"itemset sizes must be ≥ 1, got {sizes!r}")
    return out


def _check(max_items: int, utility_cap: int) -> None:
    if max_items < 1:
        raise ValueError(f"max_items (ℓ) must be ≥ 1, got {max_items}")
    if utility_cap < 1:
        raise ValueError(f"utility_cap (C) must be ≥ 1, got {utility_cap}")


def utility_sensitivity(max_items: int, utility_cap: int, sizes: int | Iterable[int]) -> Sensitivity:
    _check(max_items, utility_cap)
    per_item = sum(math.comb(max_items - 1, j - 1) for j in normalize_sizes(sizes))
    return Sensitivity(l1=utility_cap * per_item, l2_squared=utility_cap * utility_cap * per_item,
                       linf=utility_cap)


def support_sensitivity(max_items: int, sizes: int | Iterable[int]) -> Sensitivity:
    _check(max_items, 1)
    n = sum(math.comb(max_items, j) for j in normalize_sizes(sizes))
    return Sensitivity(l1=n, l2_squared=n, linf=1 if n else 0)


def presence_sensitivity(max_items: int, sizes: int | Iterable[int]) -> Sensitivity:
    return support_sensitivity(max_items, sizes)


def max_itemsets_touched(max_items: int, sizes: int | Iterable[int]) -> int:
    """How many candidate keys one transaction can add, remove or change (the L0 bound)."""
    return sum(math.comb(max_items, j) for j in normalize_sizes(sizes))


def field_sensitivity(field: str, max_items: int, utility_cap: int, sizes: int | Iterable[int]
                      ) -> Sensitivity:
    if field == "utility":
        return utility_sensitivity(max_items, utility_cap, sizes)
    if field == "support":
        return support_sensitivity(max_items, sizes)
    if field == "presence":
        return presence_sensitivity(max_items, sizes)
    raise ValueError(f"unknown field {field!r}; expected one of {FIELDS}")
