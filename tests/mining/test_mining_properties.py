"""Property tests: the engine against the brute-force miner on small random databases, for every
parameter combination (pruning on/off, min_support, max length, decimals, odd item names, both
projection strategies)."""

from __future__ import annotations

import random
from pathlib import Path
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from include.mining import Miner, Pattern, TooManyPatterns, UtilityOverflow, mine, mine_batches
from include.mining.reference import brute_force_mine

NAMES = ["a", "b", "c", "d", "e", "f", "g", "h", "Zebra", "ä", "日本", "x y", "", "10", "9", "-", "a:b"]

int_amounts = st.integers(min_value=0, max_value=40)
dec_amounts = st.builds(
    lambda m, e: Decimal(m).scaleb(-e), st.integers(min_value=0, max_value=5000), st.integers(0, 3)
)


@st.composite
def databases(draw, decimals: bool):
    amounts = st.one_of(int_amounts, dec_amounts) if decimals else int_amounts
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=8, unique=True))
    n = draw(st.integers(min_value=0, max_value=14))
    txs = []
    for _ in range(n):
        k = draw(st.integers(min_value=0, max_value=min(6, len(names))))
        items = draw(st.lists(st.sampled_from(names), min_size=k, max_size=k))  # repeats allowed
        qs = [draw(amounts) for _ in items]
        us = [draw(amounts) for _ in items]
        txs.append((items, qs, us))
    return txs


def as_map(patterns: list[Pattern]):
    return {p.items: (Fraction(p.utility), p.support_count, p.confidence) for p in patterns}


def check(txs, min_utility, min_support, max_len, pruning, projection):
    m = Miner()
    m.add_rows(txs)
    res, stats = m.search(min_utility, min_support, max_len, pruning, None, projection)
    from include.mining.api import _patterns

    got = _patterns(m._engine, res)
    expected = brute_force_mine(txs, min_utility, min_support, max_len)
    assert as_map(got) == expected
    assert len(got) == len(expected)  # no duplicates
    n = len(txs)
    for p in got:
        assert list(p.items) == sorted(p.items)
        assert p.pattern_length == len(p.items) == p.length
        assert p.support == p.support_count / n
        assert isinstance(p.utility, Decimal if m.scale else int)
        if p.pattern_length == 1:
            assert p.confidence == 1.0
    assert stats.patterns == len(got)
    return got


params = dict(
    min_support=st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, Decimal("0.3")]),
    max_len=st.sampled_from([None, 1, 2, 3]),
    pruning=st.booleans(),
    projection=st.sampled_from(["auto", "scan", "index"]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(txs=databases(decimals=False), min_utility=st.integers(min_value=0, max_value=600), **params)
def test_integers_match_brute_force(txs, min_utility, min_support, max_len, pruning, projection):
    check(txs, min_utility, min_support, max_len, pruning, projection)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    txs=databases(decimals=True),
    min_utility=st.one_of(
        st.integers(min_value=0, max_value=400),
        st.builds(lambda m: Decimal(m).scaleb(-2), st.integers(0, 40000)),
    ),
    **params,
)
def test_decimals_match_brute_force(txs, min_utility, min_support, max_len, pruning, projection):
    check(txs, min_utility, min_support, max_len, pruning, projection)


@settings(max_examples=100, deadline=None)
@given(txs=databases(decimals=True), min_utility=st.integers(0, 200), pruning=st.booleans(),
       seed=st.integers(0, 1000))
def test_order_is_deterministic_and_batches_agree(txs, min_utility, pruning, seed):
    a = mine(txs, min_utility, use_pruning=pruning)
    shuffled = txs[:]
    random.Random(seed).shuffle(shuffled)
    b = mine(shuffled, min_utility, use_pruning=pruning)
    assert a == b  # same patterns in the same order, whatever the transaction order
    batches = [shuffled[i:i + 3] for i in range(0, len(shuffled), 3)]
    c = mine_batches(iter(batches), min_utility, use_pruning=pruning).patterns
    assert c == a
    m = Miner()
    flat_items, offsets, flat_q, flat_u = [], [0], [], []
    for items, qs, us in shuffled:
        flat_items += items
        flat_q += qs
        flat_u += us
        offsets.append(len(flat_items))
    m.add_batch(flat_items, offsets, flat_q, flat_u)
    assert m.mine(min_utility, use_pruning=pruning).patterns == a


@settings(max_examples=60, deadline=None)
@given(
    n_items=st.integers(8, 14),
    n_tx=st.integers(20, 60),
    seed=st.integers(0, 10_000),
    min_utility=st.integers(50, 400),
    max_len=st.sampled_from([None, 2, 4]),
    min_support=st.sampled_from([0.0, 0.05, 0.2]),
    pruning=st.booleans(),
)
def test_denser_databases(n_items, n_tx, seed, min_utility, max_len, min_support, pruning):
    rng = random.Random(seed)
    names = [f"i{j}" for j in range(n_items)]
    txs = []
    for _ in range(n_tx):
        items = rng.sample(names, rng.randint(1, min(7, n_items)))
        txs.append((items, [rng.randint(1, 5) for _ in items], [rng.randint(1, 9) for _ in items]))
    for projection in ("scan", "index"):
        check(txs, min_utility, min_support, max_len, pruning, projection)


@settings(max_examples=150, deadline=None)
@given(txs=databases(decimals=True), min_utility=st.integers(0, 200), pruning=st.booleans(),
       max_len=st.sampled_from([None, 1, 2, 3]), pick=st.integers(0, 20),
       projection=st.sampled_from(["scan", "index"]))
def test_required_item_is_a_pruned_filter(txs, min_utility, pruning, max_len, pick, projection):
    m = Miner()
    m.add_rows(txs)
    full = m.mine(min_utility, max_pattern_length=max_len, use_pruning=pruning).patterns
    names = sorted({i for t in txs for i in t[0]}) + ["never-seen"]
    item = names[pick % len(names)]
    res, _ = m.search(min_utility, 0.0, max_len, pruning, None, projection, required_item=item)
    from include.mining.api import _patterns

    assert _patterns(m._engine, res) == [p for p in full if item in p.items]


def test_required_item_on_integer_names():
    m = Miner.from_spmf(str(Path(__file__).parent / "data" / "tiny.txt"))
    full = m.mine(10).patterns
    assert m.mine(10, required_item="3").patterns == [p for p in full if "3" in p.items]
    assert m.mine(10, required_item="x").patterns == []


def test_example_semantics():
    txs = [
        (["bread", "milk"], [2, 1], [Decimal("1.50"), Decimal("0.99")]),
        (["bread", "milk", "eggs"], [1, 2, 12], [Decimal("1.50"), Decimal("0.99"), Decimal("0.25")]),
        (["eggs"], [6], [Decimal("0.25")]),
        ([], [], []),
    ]
    pats = {p.items: p for p in mine(txs, Decimal("3.0"))}
    assert pats[("bread", "milk")].utility == Decimal("3.99") + Decimal("3.48")
    assert pats[("bread", "milk")].support_count == 2
    assert pats[("bread", "milk")].support == 0.5
    assert pats[("eggs",)].utility == Decimal("4.50")
    assert pats[("bread", "eggs", "milk")].confidence == 0.5
    assert pats[("bread", "eggs", "milk")].pattern_length == 3


def test_empty_and_zero_threshold():
    assert mine([], 0) == []
    assert mine([([], [], [])], 0) == []
    pats = mine([(["a", "b"], [0, 1], [5, 0])], 0)
    assert {p.items for p in pats} == {("a",), ("b",), ("a", "b")}
    assert all(p.utility == 0 for p in pats)


def test_too_many_patterns_names_the_parameter():
    txs = [([f"i{j}" for j in range(12)], [1] * 12, [1] * 12)]
    with pytest.raises(TooManyPatterns, match="max_patterns=100"):
        mine(txs, 0, max_patterns=100)
    assert len(mine(txs, 0, max_pattern_length=2, max_patterns=78)) == 78


def test_bad_inputs():
    with pytest.raises(TypeError, match="float"):
        mine([(["a"], [1.5], [1])], 1)
    with pytest.raises(ValueError, match="negative"):
        mine([(["a"], [-1], [1])], 1)
    with pytest.raises(ValueError, match="counts must match"):
        mine([(["a", "b"], [1], [1])], 1)
    with pytest.raises(ValueError, match="min_support"):
        mine([(["a"], [1], [1])], 1, min_support=1.5)
    with pytest.raises(ValueError, match="max_pattern_length"):
        mine([(["a"], [1], [1])], 1, max_pattern_length=0)
    with pytest.raises(ValueError, match="not a finite decimal"):
        mine([(["a"], ["NaN"], [1])], 1)


def test_overflow_is_detected():
    big = 2**63
    with pytest.raises(UtilityOverflow):
        mine([(["a"], [big], [1]), (["a"], [big], [1])], 1)
    # a scale that no longer fits after the data needed more decimal places
    with pytest.raises(UtilityOverflow):
        mine([(["a"], [10**18], [1]), (["b"], [Decimal("0.001")], [1])], 1)
    # largest exact case still works
    pats = mine([(["a"], [2**62], [2]), (["a"], [2**62 - 1], [2])], 1)
    assert pats[0].utility == 2**64 - 2
