"""Budget accounting over windows (pure logic), cross-checked with Google's dp-accounting."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import dp_accounting
import pytest
from dp_accounting import pld, rdp

from include.privacy import mechanisms as M
from include.privacy.budget import Budget, Charge, check, remaining, worst_spend
from include.privacy.sensitivity import Sensitivity

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
W1 = (T0, T0 + timedelta(days=7))
W2 = (T0 + timedelta(days=7), T0 + timedelta(days=14))
W12 = (T0 + timedelta(days=3), T0 + timedelta(days=10))   # overlaps both


def pure(eps):
    return M.Cost("pure", eps * eps / 2, eps)


def zc(rho, delta=0.0):
    return M.Cost("zcdp", rho, None, delta)


def test_pure_budget_exact_then_refused():
    b = Budget(epsilon=1.0, noise_type="laplace")
    charges = []
    for _ in range(4):
        c = Charge(*W1, pure(0.25))
        d = check(charges, c, b, "store s1")
        assert d.allowed, d.message
        charges.append(c)
    d = check(charges, Charge(*W1, pure(1e-6)), b, "store s1")
    assert not d.allowed
    assert "refused before drawing any noise" in d.message and "lifetime budget" in d.message
    assert "store s1" in d.message and "ε=1" in d.message
    assert remaining(charges, *W1, b) == 0.0


def test_zcdp_budget_exact_then_refused():
    b = Budget(epsilon=1.0, noise_type="gaussian", delta=1e-6)
    rho = M.epsilon_to_rho(1.0, 1e-6)
    charges = [Charge(*W1, zc(rho / 2)), Charge(*W1, zc(rho / 2))]
    assert check(charges[:1], charges[1], b).allowed
    assert not check(charges, Charge(*W1, zc(rho * 1e-3)), b).allowed
    assert math.isclose(worst_spend(charges, *W1, b).epsilon, 1.0, rel_tol=1e-9)
    # a pure (Laplace) charge counts ε²/2 in a zCDP ledger
    assert check([], Charge(*W1, pure(math.sqrt(2 * rho) * 0.999)), b).allowed


def test_disjoint_windows_compose_in_parallel_and_overlaps_sequentially():
    b = Budget(epsilon=1.0, noise_type="laplace")
    charges = [Charge(*W1, pure(1.0))]
    assert check(charges, Charge(*W2, pure(1.0)), b).allowed          # parallel
    charges.append(Charge(*W2, pure(1.0)))
    assert not check(charges, Charge(*W12, pure(0.01)), b).allowed   # overlaps spent windows
    # rolling windows: a half-spent week, then a window straddling it
    b2 = Budget(epsilon=1.0, noise_type="laplace")
    ch = [Charge(*W1, pure(0.5))]
    assert check(ch, Charge(*W12, pure(0.5)), b2).allowed
    assert not check(ch, Charge(*W12, pure(0.6)), b2).allowed
    assert math.isclose(remaining(ch, *W12, b2), 0.5)
    assert math.isclose(remaining(ch, *W2, b2), 1.0)


def test_aborted_charges_cost_nothing():
    b = Budget(epsilon=1.0, noise_type="laplace")
    charges = [Charge(*W1, pure(1.0), status="aborted")]
    assert check(charges, Charge(*W1, pure(1.0)), b).allowed
    charges = [Charge(*W1, pure(1.0), status="reserved")]              # reservations do count
    assert not check(charges, Charge(*W1, pure(0.1)), b).allowed


def test_global_cap_per_window():
    b = Budget(epsilon=5.0, noise_type="laplace", global_epsilon=2.0)
    charges = [Charge(*W1, pure(1.5))]
    d = check(charges, Charge(*W1, pure(1.0)), b)
    assert not d.allowed and "server_configs.privacy_budget" in d.message
    assert check(charges, Charge(*W1, pure(0.5)), b).allowed
    assert check(charges, Charge(*W2, pure(2.0)), b).allowed
    assert math.isclose(remaining(charges, *W1, b), 0.5)


def test_pure_store_refuses_zcdp_and_threshold_delta_is_bounded():
    b = Budget(epsilon=1.0, noise_type="laplace", delta=1e-6)
    d = check([], Charge(*W1, zc(0.01)), b)
    assert not d.allowed and "pure" in d.message
    assert check([], Charge(*W1, M.Cost("pure", 0.005, 0.1, 5e-7)), b).allowed
    assert not check([Charge(*W1, M.Cost("pure", 0.005, 0.1, 6e-7))],
                     Charge(*W1, M.Cost("pure", 0.005, 0.1, 6e-7)), b).allowed
    bz = Budget(epsilon=1.0, noise_type="gaussian", delta=1e-6)
    assert not check([], Charge(*W1, zc(0.001, 1e-6)), bz).allowed


def test_lifetime_totals_agree_with_dp_accounting():
    """A zCDP ledger of Gaussian releases: OpenDP's conversion of Σρ agrees with dp-accounting's RDP
    accountant to 1e-3, and is never below the (tight) PLD accountant."""
    b = Budget(epsilon=50.0, noise_type="gaussian", delta=1e-6)
    sens = Sensitivity(l1=3, l2_squared=4, linf=2)           # Δ₂ = 2
    scales = [3.0, 5.0, 5.0, 8.0, 12.0, 4.0]
    charges = [Charge(*W1, M.vector_cost("gaussian", s, sens)) for s in scales]
    ours = worst_spend(charges, *W1, b).epsilon
    r, p = rdp.RdpAccountant(), pld.PLDAccountant()
    for s in scales:
        ev = dp_accounting.GaussianDpEvent(s / 2.0)           # noise multiplier σ/Δ₂
        r.compose(ev)
        p.compose(ev)
    assert abs(ours - r.get_epsilon(1e-6)) / ours < 1e-3
    assert p.get_epsilon(1e-6) <= ours * (1 + 1e-9)
    # Laplace releases in a pure ledger: Σε; PLD (δ→0) agrees
    bp = Budget(epsilon=50.0, noise_type="laplace")
    sens1 = Sensitivity(l1=10, l2_squared=100, linf=10)
    lap = [M.vector_cost("laplace", s, sens1) for s in (20.0, 40.0, 10.0)]
    total = worst_spend([Charge(*W1, c) for c in lap], *W1, bp).epsilon
    assert math.isclose(total, 0.5 + 0.25 + 1.0, rel_tol=1e-12)
    q = pld.PLDAccountant()
    for s in (20.0, 40.0, 10.0):
        q.compose(dp_accounting.LaplaceDpEvent(s / 10.0))
    assert q.get_epsilon(1e-9) <= total * (1 + 1e-6)
    assert q.get_epsilon(1e-9) >= total * 0.98
