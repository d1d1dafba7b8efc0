"""Sensitivity bounds checked by brute force: on small random databases, add or remove every single
transaction and measure the largest change of the utility, support and presence vectors over the
public family of all itemsets (of the given sizes) of the catalogue. The bounds must hold, and must be
attained by some transaction (so they are not loose)."""
from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from include.privacy.bounding import Bounds, Transaction, bound_transaction
from include.privacy.sensitivity import (field_sensitivity, max_itemsets_touched, presence_sensitivity,
                                         sqrt_up, support_sensitivity, utility_sensitivity)
from include.privacy.vectors import candidate_vectors

CATALOGUE = tuple("abcdef")
SIZE_SETS = [(1,), (2,), (3,), (1, 2), (1, 2, 3), (2, 3)]


def family(sizes):
    return [c for j in sizes for c in itertools.combinations(CATALOGUE, j)]


def vectors(db, bounds, fam):
    v = candidate_vectors([bound_transaction(t, bounds) for t in db], fam)
    return {"utility": v.utility, "support": v.support, "presence": v.presence}


def change(a, b):
    d = [x - y for x, y in zip(a, b)]
    return sum(abs(x) for x in d), sum(x * x for x in d), max((abs(x) for x in d), default=0)


transactions = st.lists(
    st.tuples(st.sampled_from(CATALOGUE), st.integers(0, 4), st.integers(0, 300)),
    min_size=0, max_size=8,
).map(lambda lines: Transaction.of([l[0] for l in lines], [l[1] for l in lines], [l[2] for l in lines]))


def adversarial(ell: int, cap_currency: int) -> list[Transaction]:
    """Transactions that push the bounds: one heavy item plus free items, an even split, oversized ones."""
    out = []
    for n in range(1, len(CATALOGUE) + 1):
        items = list(CATALOGUE[:n])
        out.append(Transaction.of(items, [1] * n, [cap_currency * 10] + [0] * (n - 1)))
        out.append(Transaction.of(items, [1] * n, [cap_currency] * n))
        out.append(Transaction.of(items, [1] * n, [1] * n))
    return out


@settings(max_examples=60, deadline=None)
@given(db=st.lists(transactions, min_size=0, max_size=7), extra=st.lists(transactions, max_size=3),
       ell=st.integers(1, 5), cap=st.integers(1, 400), sizes=st.sampled_from(SIZE_SETS))
def test_bounds_hold_on_every_neighbour(db, extra, ell, cap, sizes):
    bounds = Bounds(max_items=ell, utility_cap=cap * 100)
    fam = family(sizes)
    base = vectors(db, bounds, fam)
    neighbours = [db[:k] + db[k + 1:] for k in range(len(db))]                 # remove one
    neighbours += [db + [t] for t in extra + adversarial(ell, cap)]           # add one
    for field in ("utility", "support", "presence"):
        s = field_sensitivity(field, ell, bounds.utility_cap, sizes)
        for nb in neighbours:
            l1, l2sq, linf = change(base[field], vectors(nb, bounds, fam)[field])
            assert l1 <= s.l1, (field, l1, s)
            assert l2sq <= s.l2_squared, (field, l2sq, s)
            assert linf <= s.linf, (field, linf, s)


def test_bounds_are_attained():
    """One transaction with ℓ items, all of C on one item (others free), added to an empty database,
    attains every bound exactly (presence/support: every itemset of it flips)."""
    for ell in range(1, len(CATALOGUE) + 1):
        for sizes in SIZE_SETS:
            bounds = Bounds(max_items=ell, utility_cap=12_300)
            fam = family(sizes)
            t = Transaction.of(list(CATALOGUE[:ell]), [1] * ell, ["123"] + ["0"] * (ell - 1))
            before, after = vectors([], bounds, fam), vectors([t], bounds, fam)
            for field in ("utility", "support", "presence"):
                s = field_sensitivity(field, ell, bounds.utility_cap, sizes)
                l1, l2sq, linf = change(after[field], before[field])
                if s.l1 == 0:
                    assert l1 == 0
                    continue
                assert (l1, l2sq, linf) == (s.l1, s.l2_squared, s.linf), (field, ell, sizes)


def test_worked_example_of_the_brief():
    """ℓ=12, k=3: utility L1 = 67·C and L2 = 8.19·C; level 3 alone 55·C and 7.42·C; support L1 = 298,
    L2 = 17.3."""
    C = 20_000
    u = utility_sensitivity(12, C, 3)
    assert u.l1 == 67 * C and u.linf == C
    assert math.isclose(u.l2 / C, 8.185, rel_tol=1e-3)
    u3 = utility_sensitivity(12, C, (3,))
    assert u3.l1 == 55 * C and math.isclose(u3.l2 / C, 7.416, rel_tol=1e-3)
    s = support_sensitivity(12, 3)
    assert s.l1 == 298 and math.isclose(s.l2, 17.26, rel_tol=1e-3) and s.linf == 1
    assert presence_sensitivity(12, 3) == s
    assert max_itemsets_touched(12, 3) == 298


def test_sqrt_up_never_below():
    for n in list(range(0, 2000)) + [26_800_000_000, 2 ** 61 + 1]:
        r = sqrt_up(n)
        assert r * r >= n or math.isclose(r * r, n)  # float check
        from fractions import Fraction
        assert Fraction(r) ** 2 >= n
