"""Integer vectors over a public, ordered candidate list (the coordinate space of a round level).

A candidate is an itemset given as a tuple of item keys (item names, or 16-hex-digit keyed item ids
when hashing is on); order inside a candidate does not matter. Each bounded transaction enumerates its
own subsets of the candidate sizes (at most Σ_j binom(ℓ, j) of them) and looks them up, so the cost is
O(n · Σ_j binom(ℓ, j)) whatever the number of candidates.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .bounding import BoundedTransaction

Itemset = tuple[str, ...]


def canonical(itemset: Iterable[str]) -> Itemset:
    """Sorted, de-duplicated tuple: the one representation of an itemset."""
    out = tuple(sorted(set(str(i) for i in itemset)))
    if not out:
        raise ValueError("empty itemset")
    return out


@dataclass(frozen=True)
class CandidateVectors:
    """utility (fixed-point), support count and presence bit per candidate, in candidate order."""

    candidates: tuple[Itemset, ...]
    utility: tuple[int, ...]
    support: tuple[int, ...]
    presence: tuple[int, ...]

    def field(self, name: str) -> tuple[int, ...]:
        return getattr(self, name)


def _relabel(tx: BoundedTransaction, item_key: Callable[[str], str] | None
             ) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if item_key is None:
        return tx.items, tx.utilities
    pairs = sorted((item_key(i), u) for i, u in zip(tx.items, tx.utilities))
    return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)


def _subsets(tx: BoundedTransaction, sizes: Sequence[int], item_key: Callable[[str], str] | None):
    """(canonical sub-itemset, its utility in tx) for every subset of tx of the given (sorted) sizes."""
    items, utils = _relabel(tx, item_key)
    n = len(items)
    for j in sizes:
        if j > n:
            break
        for combo in itertools.combinations(range(n), j):
            yield tuple(items[i] for i in combo), sum(utils[i] for i in combo)


def candidate_vectors(transactions: Iterable[BoundedTransaction], candidates: Sequence[Iterable[str]],
                      item_key: Callable[[str], str] | None = None) -> CandidateVectors:
    """Vectors over ``candidates``; ``item_key`` maps a store item name to the candidates' key space
    (e.g. its keyed hash) when candidates are hashed."""
    cands = tuple(canonical(c) for c in candidates)
    index: dict[Itemset, int] = {}
    for k, c in enumerate(cands):
        if c in index:
            raise ValueError(f"candidate {c!r} appears twice (positions {index[c]} and {k})")
        index[c] = k
    sizes = sorted({len(c) for c in cands})
    utility = [0] * len(cands)
    support = [0] * len(cands)
    for tx in transactions:
        for key, u in _subsets(tx, sizes, item_key):
            k = index.get(key)
            if k is not None:
                utility[k] += u
                support[k] += 1
    presence = [1 if s > 0 else 0 for s in support]
    return CandidateVectors(cands, tuple(utility), tuple(support), tuple(presence))


def all_itemset_utilities(transactions: Iterable[BoundedTransaction], sizes: Sequence[int],
                          item_key: Callable[[str], str] | None = None
                          ) -> tuple[dict[Itemset, int], dict[Itemset, int]]:
    """Clipped utility and support of *every* itemset of the given sizes occurring in the data.

    This (not the locally mined patterns) is the input of the threshold mechanism: it is a stable
    map (one transaction changes at most Σ_j binom(ℓ, j) keys, each by at most C), whereas a map
    restricted to locally mined patterns is not (a key can appear with a large value)."""
    sizes = sorted(set(sizes))
    utility: dict[Itemset, int] = {}
    support: dict[Itemset, int] = {}
    for tx in transactions:
        for key, u in _subsets(tx, sizes, item_key):
            utility[key] = utility.get(key, 0) + u
            support[key] = support.get(key, 0) + 1
    return utility, support
