"""The public, level-wise candidate domain of a round (privacy brief §3.7 and §6 step 3).

Level 1 is the public item catalogue; level 2 is every pair of the items kept after level 1; level 3
is every triple made of a kept pair and a kept item, restricted to triples with at least
``min_kept_subpairs`` of their three pairs kept (Apriori-style pruning; 1 gives the brief's full
"kept pair ∪ kept item" family). Which items and pairs are kept is decided from the previous level's
*noisy* release only (top-N by noisy utility), so every candidate list is post-processing and costs
no privacy.

Both sides derive the ordered list from a small :func:`spec` with :func:`generate` (one function, so
coordinator and stores agree coordinate by coordinate) and check its :func:`digest`.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence

Itemset = tuple[str, ...]

DEFAULT_KEEP_ITEMS = 100
DEFAULT_KEEP_PAIRS = 400
DEFAULT_MIN_KEPT_SUBPAIRS = 2
MAX_LEVEL = 3


def _items(values: Iterable[str]) -> list[str]:
    out = sorted({str(v) for v in values})
    if any(v == "" for v in out):
        raise ValueError("empty item name in a candidate spec")
    return out


def spec(level: int, *, items: Sequence[str], pairs: Sequence[Sequence[str]] = (),
         min_kept_subpairs: int = DEFAULT_MIN_KEPT_SUBPAIRS) -> dict:
    """The JSON-able description of a level's candidate list."""
    if level == 1:
        return {"level": 1, "kind": "items", "items": _items(items)}
    if level == 2:
        return {"level": 2, "kind": "pairs", "items": _items(items)}
    if level == 3:
        ps = sorted({tuple(sorted(p)) for p in pairs})
        if any(len(p) != 2 or p[0] == p[1] for p in ps):
            raise ValueError("level-3 spec: pairs must hold two distinct items")
        if not 1 <= int(min_kept_subpairs) <= 3:
            raise ValueError("min_kept_subpairs must be 1, 2 or 3")
        return {"level": 3, "kind": "triples", "items": _items(items), "pairs": [list(p) for p in ps],
                "min_kept_subpairs": int(min_kept_subpairs)}
    raise ValueError(f"level must be 1..{MAX_LEVEL}, got {level}")


def with_proposals(s: dict, proposals: Iterable[Sequence[str]]) -> dict:
    """The spec extended by store-proposed itemsets of the spec's level (``extra``: canonical, sorted)."""
    level = int(s["level"])
    extra = sorted({tuple(sorted({str(i) for i in p})) for p in proposals if len(set(p)) == level})
    if not extra:
        return s
    if any(i == "" for e in extra for i in e):
        raise ValueError("empty item name in a proposed candidate")
    return {**s, "extra": [list(e) for e in extra]}


def proposals_by_level(answers: Iterable, max_level: int) -> dict[int, list[Itemset]]:
    """The union of the stores' proposals (each a list of item lists), per itemset size ≤ ``max_level``.
    Malformed entries raise ValueError (the caller drops that store's proposals)."""
    out: dict[int, set] = {}
    for proposals in answers:
        if proposals is None:
            continue
        if not isinstance(proposals, list):
            raise ValueError("proposals must be a list of item lists")
        for p in proposals:
            if not isinstance(p, list) or not p or not all(isinstance(i, str) and i for i in p):
                raise ValueError(f"malformed proposal {p!r}")
            t = tuple(sorted(set(p)))
            if len(t) <= max_level:
                out.setdefault(len(t), set()).add(t)
    return {k: sorted(v) for k, v in out.items()}


def generate(s: Mapping) -> list[Itemset]:
    """The ordered candidate list of a spec (sorted canonical tuples), with its ``extra`` proposals."""
    base = _generate(s)
    extra = s.get("extra")
    if not extra:
        return base
    return sorted(set(base) | {tuple(sorted(e)) for e in extra})


def _generate(s: Mapping) -> list[Itemset]:
    kind = s.get("kind")
    items = _items(s.get("items", ()))
    if kind == "items":
        return [(i,) for i in items]
    if kind == "pairs":
        return list(itertools.combinations(items, 2))
    if kind == "triples":
        kept = {tuple(sorted(p)) for p in s["pairs"]}
        need = int(s.get("min_kept_subpairs", DEFAULT_MIN_KEPT_SUBPAIRS))
        out: set[Itemset] = set()
        for a, b in kept:
            for c in items:
                if c == a or c == b:
                    continue
                t = tuple(sorted((a, b, c)))
                if t in out:
                    continue
                n = sum(1 for p in itertools.combinations(t, 2) if p in kept)
                if n >= need:
                    out.add(t)
        return sorted(out)
    raise ValueError(f"unknown candidate spec kind {kind!r}")


def digest(candidates: Sequence[Itemset]) -> str:
    """SHA-256 of the canonical JSON of the ordered list (both sides compare it)."""
    text = json.dumps([list(c) for c in candidates], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def top_by_utility(candidates: Sequence[Itemset], noisy_utility: Sequence[int], n: int) -> list[Itemset]:
    """The ``n`` candidates of largest noisy utility (ties: candidate order)."""
    order = sorted(range(len(candidates)), key=lambda k: (-int(noisy_utility[k]), k))
    return [candidates[k] for k in order[: max(0, int(n))]]


def next_spec(level: int, released: Mapping[int, tuple[Sequence[Itemset], Sequence[int]]], *,
              keep_items: int = DEFAULT_KEEP_ITEMS, keep_pairs: int = DEFAULT_KEEP_PAIRS,
              min_kept_subpairs: int = DEFAULT_MIN_KEPT_SUBPAIRS) -> dict:
    """The spec of ``level`` (2 or 3) from the noisy releases of the earlier levels
    (``released[k] = (candidates, noisy utility)``)."""
    c1, u1 = released[1]
    kept_items = [c[0] for c in top_by_utility(c1, u1, keep_items)]
    if level == 2:
        return spec(2, items=kept_items)
    if level == 3:
        c2, u2 = released[2]
        return spec(3, items=kept_items, pairs=top_by_utility(c2, u2, keep_pairs),
                    min_kept_subpairs=min_kept_subpairs)
    raise ValueError(f"next_spec: level must be 2 or 3, got {level}")
