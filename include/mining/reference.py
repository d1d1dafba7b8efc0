"""Brute-force reference miner (pure Python, exact, exponential): the oracle of the tests.

Enumerates every itemset occurring in some transaction (up to ``max_pattern_length`` items) and
applies the definitions of docs/mining.md literally. Only for tiny databases.
"""

from __future__ import annotations

import math
from collections import defaultdict
from decimal import Decimal
from fractions import Fraction
from itertools import combinations
from typing import Any


def _exact(x: Any) -> Fraction:
    if isinstance(x, float):
        raise TypeError("binary floats are not accepted")
    return Fraction(Decimal(x) if isinstance(x, str) else x)


def brute_force_mine(
    transactions, min_utility, min_support=0.0, max_pattern_length=None
) -> dict[tuple[str, ...], tuple[Fraction, int, float]]:
    """Return {sorted items: (utility, support_count, confidence)}."""
    db: list[dict[str, Fraction]] = []
    for items, qs, us in transactions:
        t: dict[str, Fraction] = defaultdict(Fraction)
        for i, q, u in zip(items, qs, us, strict=True):
            t[i] += _exact(q) * _exact(u)
        db.append(dict(t))
    n = len(db)
    mu = Fraction(Decimal(repr(min_utility))) if isinstance(min_utility, float) else _exact(min_utility)
    ms = Fraction(Decimal(repr(min_support))) if isinstance(min_support, float) else _exact(min_support)
    min_count = max(1, math.ceil(ms * n))
    item_sup: dict[str, int] = defaultdict(int)
    for t in db:
        for i in t:
            item_sup[i] += 1
    util: dict[tuple[str, ...], Fraction] = defaultdict(Fraction)
    sup: dict[tuple[str, ...], int] = defaultdict(int)
    for t in db:
        names = sorted(t)
        top = len(names) if max_pattern_length is None else min(len(names), max_pattern_length)
        for k in range(1, top + 1):
            for c in combinations(names, k):
                util[c] += sum(t[i] for i in c)
                sup[c] += 1
    out = {}
    for c, u in util.items():
        if u >= mu and sup[c] >= min_count:
            out[c] = (u, sup[c], sup[c] / max(item_sup[i] for i in c))
    return out
