"""Contribution bounding (ℓ items, cap C, fixed point) and the ℓ/C suggestion."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from include.privacy.bounding import (Bounds, BoundingError, Transaction, bound_transaction, from_fixed_point,
                                      item_utilities, nearest_rank, suggest_bounds, to_fixed_point)


def tx(items, q=None, p=None):
    q = q or [1] * len(items)
    p = p or [1] * len(items)
    return Transaction.of(items, q, p)


def test_fixed_point_half_even_and_back():
    assert to_fixed_point("1.005") == 100          # half-even at the cent
    assert to_fixed_point("1.015") == 102
    assert to_fixed_point(2) == 200
    assert to_fixed_point(0.1) == 10               # floats through repr, not binary expansion
    assert from_fixed_point(12345) == Decimal("123.45")
    with pytest.raises(BoundingError, match="not a number"):
        to_fixed_point("abc")


def test_item_utilities_merge_duplicates_and_clamp_negatives():
    t = Transaction.of(["a", "b", "a", "c"], [1, 2, 3, 1], ["1.50", "2", "1.50", "-4"])
    assert item_utilities(t) == {"a": 600, "b": 400, "c": 0}


def test_length_mismatch_is_named():
    with pytest.raises(BoundingError, match="differ in length"):
        Transaction.of(["a", "b"], [1], [1, 1], id="t-7")


def test_keeps_top_items_then_scales_to_cap():
    t = Transaction.of(["a", "b", "c", "d"], [1, 1, 1, 1], ["10", "30", "20", "30"])
    b = bound_transaction(t, Bounds(max_items=2, utility_cap=10_000))
    assert b.items == ("b", "d")                    # ties broken by name, order canonical
    assert b.utilities == (3000, 3000)
    b = bound_transaction(t, Bounds(max_items=3, utility_cap=5_000))
    assert b.items == ("b", "c", "d")
    assert b.total_utility <= 5_000
    assert b.utilities == (1875, 1250, 1875)        # floor(u * C / TU), TU = 8000


def test_bounds_validation():
    with pytest.raises(BoundingError, match="max_items"):
        Bounds(max_items=0)
    assert Bounds.from_currency(12, "200").utility_cap == 20_000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdefghij"), st.integers(0, 5),
                          st.decimals(min_value=-5, max_value=500, places=2)), max_size=15),
       st.integers(1, 8), st.integers(1, 100_000))
def test_bounded_transaction_properties(lines, ell, cap):
    t = Transaction.of([l[0] for l in lines], [l[1] for l in lines], [l[2] for l in lines])
    b = bound_transaction(t, Bounds(ell, cap))
    full = item_utilities(t)
    assert len(b.items) <= ell and len(set(b.items)) == len(b.items)
    assert list(b.items) == sorted(b.items)
    assert b.total_utility <= cap
    assert all(0 <= u <= full[i] for i, u in zip(b.items, b.utilities))
    if len(full) <= ell and sum(full.values()) <= cap:
        assert dict(zip(b.items, b.utilities)) == full  # nothing to clip: unchanged


def test_nearest_rank():
    assert nearest_rank([1, 2, 3, 4], 50) == 2
    assert nearest_rank([1, 2, 3, 4], 95) == 4
    assert nearest_rank(list(range(1, 101)), 95) == 95


def test_suggest_bounds():
    txs = [tx([f"i{k}" for k in range(n)], p=["1.00"] * n) for n in range(1, 101)]  # lengths 1..100
    s = suggest_bounds(txs)
    assert s.max_items == 95
    assert s.transaction_utility_p99 == 9900
    assert s.utility_cap == 9900                      # 99.00, already whole
    assert s.n_transactions == 100
    assert 0 < s.clipped_share <= 0.06
    assert s.as_dict()["privacy_utility_cap"] == "99"
    s2 = suggest_bounds([tx(["a"], p=["0.37"])])
    assert s2.utility_cap == 100                      # rounded up to a whole currency unit
    with pytest.raises(BoundingError):
        suggest_bounds([])
