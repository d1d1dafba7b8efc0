"""OpenDP mechanisms: costs from .map, calibration, and statistical checks of the noise.

Statistical tolerances: with n draws the relative standard error of an empirical variance is
√((κ−1)/n) (κ = kurtosis: 6 for Laplace, 3 for Gaussian). The tolerances below are ≥ 5 standard errors,
so a correct sampler fails them with probability < 1e-6 per check
(N = 100k: Laplace SE 0.71 % -> tolerance 4 %, Gaussian SE 0.45 % -> 2.5 %; 20k-draw share checks:
SE 1 % -> 5 %).
"""
from __future__ import annotations

import math

import pytest

from include.privacy import mechanisms as M
from include.privacy.sensitivity import Sensitivity, max_itemsets_touched, utility_sensitivity

N = 100_000


def moments(xs):
    n = len(xs)
    mean = sum(xs) / n
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, var


@pytest.mark.parametrize("noise_type,scale,tol", [("laplace", 5.0, 0.04), ("laplace", 300.0, 0.04),
                                                  ("gaussian", 7.5, 0.025), ("gaussian", 2500.0, 0.025)])
def test_noise_variance_matches_scale(noise_type, scale, tol):
    before = M.noise_draws()
    noisy = M.add_noise([1000] * N, noise_type, scale)
    assert M.noise_draws() == before + 1
    assert all(type(v) is int for v in noisy)                       # integer-valued
    noise = [v - 1000 for v in noisy]
    mean, var = moments(noise)
    expected = M.noise_variance(noise_type, scale)
    assert abs(var / expected - 1) < tol, (var, expected)
    assert abs(mean) < 6 * math.sqrt(expected / N)                  # unbiased
    if noise_type == "laplace":
        assert math.isclose(expected, 2 * scale ** 2, rel_tol=0.01)  # discrete Laplace ≈ 2b²


def test_shares_sum_to_target_variance():
    """Twelve Gaussian shares (t − c = 12) sum to noise of variance σ²."""
    sigma, honest, n = 60.0, 12, 20_000
    s = M.share_scale("gaussian", sigma, honest)
    assert math.isclose(s, sigma / math.sqrt(honest))
    total = [0] * n
    for _ in range(honest):
        share = M.noise_share([0] * n, "gaussian", sigma, honest)
        total = [a + b for a, b in zip(total, share)]
    _, var = moments(total)
    assert abs(var / sigma ** 2 - 1) < 0.05
    _, var1 = moments(M.noise_share([0] * n, "gaussian", sigma, honest))
    assert abs(var1 / (sigma ** 2 / honest) - 1) < 0.05
    # Laplace shares carry the full scale (one honest store suffices)
    assert M.share_scale("laplace", 10.0, 12) == 10.0
    with pytest.raises(M.PrivacyError, match="too small"):
        M.share_scale("gaussian", 0.5, 12)
    with pytest.raises(M.PrivacyError, match="honest_min"):
        M.share_scale("gaussian", 50.0, 0)


def test_costs_are_opendp_maps_and_match_closed_forms():
    import opendp.prelude as dp
    dp.enable_features("contrib")
    s = utility_sensitivity(12, 20_000, 3)
    c = M.vector_cost("laplace", 1e6, s)
    direct = ((dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64"))
              >> dp.m.then_laplace(scale=1e6)).map(s.l1)
    assert c.epsilon == direct and math.isclose(c.epsilon, s.l1 / 1e6, rel_tol=1e-12)
    assert math.isclose(c.rho, c.epsilon ** 2 / 2, rel_tol=1e-12)
    g = M.vector_cost("gaussian", 4e5, s)
    assert math.isclose(g.rho, s.l2_squared / (2 * 4e5 ** 2), rel_tol=1e-9)
    assert g.epsilon is None and g.accounting == "zcdp"


def test_brief_reference_numbers():
    # σ=8, Δ₂=4 → ρ=0.125 → (2.419, 1e-6); ρ 0.0175 → ε 0.84
    assert math.isclose(M.vector_cost("gaussian", 8.0, Sensitivity(4, 16, 4)).rho, 0.125)
    assert math.isclose(M.rho_to_epsilon(0.125, 1e-6), 2.419, abs_tol=1e-3)
    assert math.isclose(M.rho_to_epsilon(0.0175, 1e-6), 0.84, abs_tol=5e-3)


@pytest.mark.parametrize("noise_type", M.NOISE_TYPES)
def test_calibration_is_tight_and_safe(noise_type):
    s = utility_sensitivity(8, 30_000, (2,))
    for target in (0.01, 0.3, 2.0):
        scale = M.calibrate_scale(noise_type, s, target)
        cost = M.vector_cost(noise_type, scale, s)
        got = cost.epsilon if noise_type == "laplace" else cost.rho
        assert got <= target
        assert got >= target * (1 - 1e-9)


@pytest.mark.parametrize("noise_type", M.NOISE_TYPES)
def test_plan_splits_budget(noise_type):
    target = M.target_for(noise_type, 1.0, 1e-6)
    plan = M.plan_vector_release(noise_type, 12, 20_000, 3, target)
    assert [f.field for f in plan.fields] == ["utility", "support", "presence"]
    got = plan.cost.epsilon if noise_type == "laplace" else plan.cost.rho
    assert target * (1 - 1e-9) <= got <= target
    eps, delta = plan.cost.approx_dp(1e-6)
    assert eps <= 1.0 and eps > 0.999
    u = plan.field_release("utility").cost
    assert math.isclose((u.epsilon if noise_type == "laplace" else u.rho) / got, 0.6, rel_tol=1e-6)


def test_epsilon_rho_roundtrip():
    for eps in (0.1, 0.5, 1.0, 4.0):
        rho = M.epsilon_to_rho(eps, 1e-6)
        assert M.rho_to_epsilon(rho, 1e-6) <= eps
        assert M.rho_to_epsilon(rho * (1 + 1e-6), 1e-6) > eps * (1 - 1e-5)


@pytest.mark.parametrize("noise_type", M.NOISE_TYPES)
def test_threshold_mechanism(noise_type):
    s = utility_sensitivity(4, 10_000, 2)
    l0 = max_itemsets_touched(4, 2)
    scale = M.calibrate_scale(noise_type, s, 0.5)
    th = M.calibrate_threshold(noise_type, scale, s, l0, 1e-7)
    cost = M.threshold_cost(noise_type, scale, th, s, l0)
    assert cost.delta <= 1e-7
    assert M.threshold_cost(noise_type, scale, th - 1, s, l0).delta > 1e-7   # smallest such threshold
    big, small = 50 * th, th // 100
    values = {("a", "b"): big, ("c",): small, ("d",): big + 1}
    before = M.noise_draws()
    out = M.release_open_keys(values, noise_type, scale, th)
    assert M.noise_draws() == before + 1
    assert set(out) == {("a", "b"), ("d",)}
    assert all(type(v) is int for v in out.values())
    assert all(abs(out[k] - values[k]) < 40 * scale for k in out)


def test_range_checks():
    with pytest.raises(M.PrivacyError, match="not an integer"):
        M.add_noise([1.5], "gaussian", 3.0)
    with pytest.raises(M.PrivacyError, match="2\\^62"):
        M.add_noise([2 ** 62], "gaussian", 3.0)
    with pytest.raises(M.PrivacyError, match="noise_type"):
        M.add_noise([1], "uniform", 3.0)
    assert M.add_noise([], "laplace", 3.0) == []
