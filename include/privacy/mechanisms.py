"""Noise mechanisms and their privacy costs, all from OpenDP (never numpy or ``random``).

* ``noise_type='laplace'``: discrete Laplace on integer (i64) vectors, L1 sensitivity, pure ε-DP.
* ``noise_type='gaussian'``: discrete Gaussian on integer vectors, L2 sensitivity, ρ-zCDP.
* threshold mechanisms (OpenDP ``make_laplace_threshold`` / ``make_gaussian_threshold``) to release an
  *open* set of keys (store-proposed itemsets), cost (ε, δ) or (ρ, δ).
* noise *shares* for distributed mode.

Every cost is the ``.map`` of the OpenDP measurement that is (or, for shares, that the aggregate
equals); conversions between pure ε, zCDP ρ and (ε, δ) use OpenDP's ``make_pureDP_to_zCDP`` and
``make_zCDP_to_approxDP``. Only the *composition* of costs (adding ε's, or adding ρ's) is done here,
and the tests cross-check it against OpenDP compositions and Google's ``dp-accounting``.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import opendp.prelude as dp

from .sensitivity import Sensitivity

dp.enable_features("contrib")

NOISE_TYPES = ("laplace", "gaussian")
# |value| bound before noise: leaves > 2^62 of head room for noise, and catches OpenDP's silent
# saturation at the i64 limits.
MAX_ABS_VALUE = 2 ** 62
_I64_MAX = 2 ** 63 - 1
KEY_SEPARATOR = "\x1f"  # joins the items of an itemset into one OpenDP map key


class PrivacyError(ValueError):
    """Bad mechanism parameters (named in the message)."""


def check_noise_type(noise_type: str) -> str:
    if noise_type not in NOISE_TYPES:
        raise PrivacyError(f"noise_type must be one of {NOISE_TYPES}, got {noise_type!r}")
    return noise_type


# --------------------------------------------------------------------------------------------------
# Costs
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cost:
    """The privacy cost of one release or of a composition of releases.

    ``accounting='pure'``: ``epsilon`` is the pure ε (basic composition adds ε's) and ``rho`` its zCDP
    equivalent ε²/2 (OpenDP ``make_pureDP_to_zCDP``). ``accounting='zcdp'``: ``rho`` is ρ, ``epsilon`` is
    None. ``delta`` is the δ of approximate mechanisms (thresholds), which adds up under composition.
    """

    accounting: str
    rho: float
    epsilon: float | None = None
    delta: float = 0.0

    def __post_init__(self) -> None:
        if self.accounting not in ("pure", "zcdp"):
            raise PrivacyError(f"accounting must be 'pure' or 'zcdp', got {self.accounting!r}")
        if self.accounting == "pure" and self.epsilon is None:
            raise PrivacyError("a pure cost needs epsilon")
        if self.rho < 0 or self.delta < 0 or (self.epsilon is not None and self.epsilon < 0):
            raise PrivacyError(f"negative cost: {self}")

    def __add__(self, other: "Cost") -> "Cost":
        if not isinstance(other, Cost):
            return NotImplemented
        if self.accounting == other.accounting == "pure":
            return Cost("pure", self.rho + other.rho, self.epsilon + other.epsilon, self.delta + other.delta)
        return Cost("zcdp", self.rho + other.rho, None, self.delta + other.delta)

    @staticmethod
    def zero(accounting: str = "zcdp") -> "Cost":
        return Cost(accounting, 0.0, 0.0 if accounting == "pure" else None, 0.0)

    def approx_dp(self, delta: float) -> tuple[float, float]:
        """(ε, δ) for display. Pure: ε as is, δ = the thresholds' δ. zCDP: ρ converted by OpenDP at what
        is left of the total ``delta`` after the thresholds' δ (if they already use it all: at ``delta``
        on top of theirs)."""
        if self.accounting == "pure":
            return float(self.epsilon), self.delta
        if self.delta < delta:
            return rho_to_epsilon(self.rho, delta - self.delta), delta
        return rho_to_epsilon(self.rho, delta), delta + self.delta

    def as_dict(self, delta: float | None = None) -> dict:
        d = {"accounting": self.accounting, "rho": self.rho, "epsilon": self.epsilon, "delta": self.delta}
        if delta is not None:
            d["approx_dp"] = self.approx_dp(delta)
        return d


@functools.lru_cache(maxsize=1)
def _unit_gaussian():
    return (dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)) >> dp.m.then_gaussian(scale=1.0)


@functools.lru_cache(maxsize=4096)
def rho_to_epsilon(rho: float, delta: float) -> float:
    """ε of ρ-zCDP at δ, by OpenDP's ``make_zCDP_to_approxDP`` (a unit-scale Gaussian at d_in=√(2ρ))."""
    if rho < 0:
        raise PrivacyError(f"rho must be ≥ 0, got {rho}")
    if not 0 < delta < 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta}")
    if rho == 0:
        return 0.0
    m = _unit_gaussian()
    d_in = math.sqrt(2.0 * rho)
    while m.map(d_in) < rho:  # never convert less than rho
        d_in = math.nextafter(d_in, math.inf)
    return float(dp.c.make_zCDP_to_approxDP(m).map(d_in).epsilon(delta))


def epsilon_to_rho(epsilon: float, delta: float) -> float:
    """The largest ρ whose OpenDP (ε, δ) conversion is at most ``epsilon`` (bisection)."""
    if epsilon <= 0:
        raise PrivacyError(f"epsilon must be > 0, got {epsilon}")
    lo, hi = 0.0, max(1.0, epsilon)
    while rho_to_epsilon(hi, delta) <= epsilon:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if rho_to_epsilon(mid, delta) <= epsilon:
            lo = mid
        else:
            hi = mid
    return lo


def target_for(noise_type: str, epsilon: float, delta: float) -> float:
    """The per-release budget in the mechanism's own unit: ε (laplace) or ρ (gaussian)."""
    return float(epsilon) if check_noise_type(noise_type) == "laplace" else epsilon_to_rho(epsilon, delta)


# --------------------------------------------------------------------------------------------------
# Vector mechanisms
# --------------------------------------------------------------------------------------------------
def _space(noise_type: str):
    dom = dp.vector_domain(dp.atom_domain(T="i64"))
    if check_noise_type(noise_type) == "laplace":
        return dom, dp.l1_distance(T="i64")
    return dom, dp.l2_distance(T=float)


@functools.lru_cache(maxsize=256)
def vector_measurement(noise_type: str, scale: float) -> dp.Measurement:
    """OpenDP measurement adding discrete Laplace / discrete Gaussian noise of ``scale`` to an i64 vector."""
    if not (scale > 0 and math.isfinite(scale)):
        raise PrivacyError(f"noise scale must be a positive finite number, got {scale}")
    space = _space(noise_type)
    if noise_type == "laplace":
        return space >> dp.m.then_laplace(scale=float(scale))
    return space >> dp.m.then_gaussian(scale=float(scale))


def d_in(noise_type: str, sens: Sensitivity):
    return sens.l1 if check_noise_type(noise_type) == "laplace" else sens.l2


def vector_cost(noise_type: str, scale: float, sens: Sensitivity) -> Cost:
    """The cost of one vector release, by OpenDP ``.map``."""
    m = vector_measurement(noise_type, scale)
    if noise_type == "laplace":
        eps = float(m.map(sens.l1))
        rho = float(dp.c.make_pureDP_to_zCDP(m).map(sens.l1))
        return Cost("pure", rho, eps)
    return Cost("zcdp", float(m.map(sens.l2)))


def calibrate_scale(noise_type: str, sens: Sensitivity, target: float) -> float:
    """A scale whose OpenDP cost at ``sens`` is at most ``target`` (ε or ρ), within 1e-11 of the
    smallest such scale."""
    if not target > 0:
        raise PrivacyError(f"budget must be > 0, got {target}")
    if (sens.l1 if noise_type == "laplace" else sens.l2_squared) == 0:
        raise PrivacyError("zero sensitivity: nothing to protect, refusing to calibrate")
    # closed form as the starting point (ε = Δ1/b; ρ = Δ2²/(2σ²)), then OpenDP's map is the judge
    if noise_type == "laplace":
        scale = sens.l1 / float(target)
    else:
        scale = sens.l2 / math.sqrt(2.0 * float(target))
    while vector_measurement(noise_type, scale).map(d_in(noise_type, sens)) > target:
        scale *= 1.0 + 1e-12
    return scale


def noise_variance(noise_type: str, scale: float) -> float:
    """Variance of OpenDP's discrete noise at ``scale``.

    Discrete Laplace with scale b (P(x) ∝ e^{-|x|/b}): 2q/(1−q)² with q = e^{−1/b} (≈ 2b²).
    Discrete Gaussian with scale σ: at most σ² (and within 10⁻⁹ relative of it for σ ≥ 1)."""
    check_noise_type(noise_type)
    if noise_type == "laplace":
        q = math.exp(-1.0 / scale)
        return 2.0 * q / (1.0 - q) ** 2
    return float(scale) ** 2


# --------------------------------------------------------------------------------------------------
# Noise draws (the only places that sample)
# --------------------------------------------------------------------------------------------------
_DRAWS = 0


def noise_draws() -> int:
    """How many noise draws this process made (tests check that a refused release made none)."""
    return _DRAWS


def _checked(values: Sequence[int]) -> list[int]:
    out = []
    for k, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            raise PrivacyError(f"value {k} is not an integer: {v!r} (fixed-point integers only)")
        if abs(v) >= MAX_ABS_VALUE:
            raise PrivacyError(f"value {k} = {v} is outside ±2^62 (overflow risk)")
        out.append(v)
    return out


def _draw(noise_type: str, scale: float, values: Sequence[int]) -> list[int]:
    global _DRAWS
    vals = _checked(values)
    if not vals:
        return []
    _DRAWS += 1
    out = vector_measurement(noise_type, scale)(vals)
    if any(abs(v) >= _I64_MAX for v in out):
        raise PrivacyError("noisy value saturated at the i64 limit; lower the scale or the values")
    return [int(v) for v in out]


def add_noise(values: Sequence[int], noise_type: str, scale: float) -> list[int]:
    """``values`` plus full discrete Laplace / Gaussian noise of ``scale`` (local mode)."""
    return _draw(noise_type, scale, values)


# Kairouz, Liu & Steinke (ICML 2021, "The Distributed Discrete Gaussian Mechanism"): the sum of n
# discrete Gaussians of scale s is close to a discrete Gaussian of scale s·√n, the gap being governed by
# τ = 10 · Σ_{k=1}^{n−1} exp(−2π² s² k/(k+1)). We only hand out shares whose τ is below 1e-12, where
# the difference is far below OpenDP's own float rounding, and charge the aggregate's OpenDP cost.
MAX_KLS_TAU = 1e-12


def kls_tau(share_scale: float, n: int) -> float:
    return 10.0 * sum(math.exp(-2.0 * math.pi ** 2 * share_scale ** 2 * k / (k + 1)) for k in range(1, n))


def share_scale(noise_type: str, scale: float, honest_min: int) -> float:
    """The noise scale of one store's share so that any ``honest_min`` (= t − c) honest shares sum to
    at least the target noise.

    Gaussian: variance σ²/(t−c) each, i.e. scale σ/√(t−c). Laplace: a sum of discrete Laplace shares is
    not a discrete Laplace (the Pólya decomposition is not in OpenDP), so each store adds the *full*
    scale; one honest store then suffices, at a √n accuracy cost."""
    check_noise_type(noise_type)
    if int(honest_min) < 1:
        raise PrivacyError(f"honest_min (t − c) must be ≥ 1, got {honest_min}")
    if noise_type == "laplace":
        return float(scale)
    s = float(scale) / math.sqrt(int(honest_min))
    if kls_tau(s, int(honest_min)) > MAX_KLS_TAU:
        raise PrivacyError(f"share scale {s:.4g} is too small for a distributed discrete Gaussian over "
                           f"{honest_min} stores (use a larger scale or fewer shares)")
    return s


def noise_share(values: Sequence[int], noise_type: str, scale: float, honest_min: int) -> list[int]:
    """``values`` plus this store's noise share for distributed mode (see :func:`share_scale`).
    The round's cost is the cost of the *aggregate* mechanism, ``vector_cost(noise_type, scale, …)``."""
    return _draw(noise_type, share_scale(noise_type, scale, honest_min), values)


# --------------------------------------------------------------------------------------------------
# Threshold mechanism (open key sets)
# --------------------------------------------------------------------------------------------------
def encode_key(itemset: Sequence[str]) -> str:
    for i in itemset:
        if KEY_SEPARATOR in i:
            raise PrivacyError(f"item {i!r} contains the reserved separator \\x1f")
    return KEY_SEPARATOR.join(itemset)


def decode_key(key: str) -> tuple[str, ...]:
    return tuple(key.split(KEY_SEPARATOR))


@functools.lru_cache(maxsize=256)
def threshold_measurement(noise_type: str, scale: float, threshold: int) -> dp.Measurement:
    dom = dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T="i64"))
    if check_noise_type(noise_type) == "laplace":
        return (dom, dp.l01inf_distance(dp.absolute_distance(T="i64"))) >> dp.m.then_laplace_threshold(
            scale=float(scale), threshold=int(threshold))
    return (dom, dp.l02inf_distance(dp.absolute_distance(T=float))) >> dp.m.then_gaussian_threshold(
        scale=float(scale), threshold=int(threshold))


def threshold_d_in(noise_type: str, sens: Sensitivity, l0: int):
    if noise_type == "laplace":
        return (int(l0), int(sens.l1), int(sens.linf))
    return (int(l0), float(sens.l2), float(sens.linf))


def threshold_cost(noise_type: str, scale: float, threshold: int, sens: Sensitivity, l0: int) -> Cost:
    eps_or_rho, delta = threshold_measurement(noise_type, scale, threshold).map(
        threshold_d_in(noise_type, sens, l0))
    if noise_type == "laplace":
        # pure part ε, converted to zCDP ε²/2 as OpenDP's make_pureDP_to_zCDP does
        rho = float(dp.c.make_pureDP_to_zCDP(vector_measurement("laplace", float(scale))).map(sens.l1))
        return Cost("pure", rho, float(eps_or_rho), float(delta))
    return Cost("zcdp", float(eps_or_rho), None, float(delta))


def calibrate_threshold(noise_type: str, scale: float, sens: Sensitivity, l0: int, delta: float) -> int:
    """The smallest integer threshold whose OpenDP δ is at most ``delta``."""
    if not 0 < delta < 1:
        raise PrivacyError(f"threshold delta must be in (0, 1), got {delta}")
    lo, hi = max(1, int(sens.linf)), max(2, int(sens.linf) * 2)
    while threshold_cost(noise_type, scale, hi, sens, l0).delta > delta:
        lo, hi = hi, hi * 2
        if hi > MAX_ABS_VALUE:
            raise PrivacyError(f"no threshold reaches delta={delta} at scale {scale}")
    while lo < hi:
        mid = (lo + hi) // 2
        if threshold_cost(noise_type, scale, mid, sens, l0).delta <= delta:
            hi = mid
        else:
            lo = mid + 1
    return hi


def release_open_keys(values: Mapping[tuple[str, ...], int], noise_type: str, scale: float,
                      threshold: int) -> dict[tuple[str, ...], int]:
    """Noisy values of the keys whose noisy value clears ``threshold``; the others are dropped."""
    global _DRAWS
    data = {}
    for k, v in values.items():
        _checked([v])
        data[encode_key(k)] = int(v)
    _DRAWS += 1
    out = threshold_measurement(noise_type, scale, threshold)(data)
    return {decode_key(k): int(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------------
# Planning a vector release (one round level, or a local-mode contribution)
# --------------------------------------------------------------------------------------------------
DEFAULT_SPLIT = {"utility": 0.6, "support": 0.3, "presence": 0.1}


@dataclass(frozen=True)
class FieldRelease:
    field: str
    sizes: tuple[int, ...]
    noise_type: str
    sensitivity: Sensitivity
    scale: float
    cost: Cost

    @property
    def stddev(self) -> float:
        return math.sqrt(noise_variance(self.noise_type, self.scale))

    def as_dict(self) -> dict:
        return {"field": self.field, "sizes": list(self.sizes), "noise_type": self.noise_type,
                "sensitivity": self.sensitivity.as_dict(), "scale": self.scale, "stddev": self.stddev,
                "cost": self.cost.as_dict()}


@dataclass(frozen=True)
class ReleasePlan:
    noise_type: str
    fields: tuple[FieldRelease, ...]
    extra: tuple[Cost, ...] = field(default=())

    @property
    def cost(self) -> Cost:
        total = Cost.zero("pure" if self.noise_type == "laplace" else "zcdp")
        for f in self.fields:
            total = total + f.cost
        for c in self.extra:
            total = total + c
        return total

    def field_release(self, name: str) -> FieldRelease:
        for f in self.fields:
            if f.field == name:
                return f
        raise KeyError(name)

    def as_dict(self, delta: float | None = None) -> dict:
        return {"noise_type": self.noise_type, "fields": [f.as_dict() for f in self.fields],
                "cost": self.cost.as_dict(delta)}


def plan_field(field_name: str, noise_type: str, sens: Sensitivity, sizes: tuple[int, ...], target: float
               ) -> FieldRelease:
    scale = calibrate_scale(noise_type, sens, target)
    return FieldRelease(field_name, sizes, noise_type, sens, scale, vector_cost(noise_type, scale, sens))


def plan_vector_release(noise_type: str, max_items: int, utility_cap: int, sizes, target: float,
                        split: Mapping[str, float] | None = None) -> ReleasePlan:
    """Calibrate one scale per field so that the fields' costs sum to at most ``target`` (ε for
    laplace, ρ for gaussian), split by ``split`` (default utility 60 %, support 30 %, presence 10 %;
    a field with weight 0 is not released)."""
    from .sensitivity import field_sensitivity, normalize_sizes
    check_noise_type(noise_type)
    split = dict(DEFAULT_SPLIT if split is None else split)
    total_w = sum(split.values())
    if total_w <= 0 or any(w < 0 for w in split.values()):
        raise PrivacyError(f"invalid split {split}")
    sz = normalize_sizes(sizes)
    fields = []
    for name, w in split.items():
        if w == 0:
            continue
        sens = field_sensitivity(name, max_items, utility_cap, sz)
        # shares shrunk by 1e-12 so that float rounding of the split never sums above the target
        fields.append(plan_field(name, noise_type, sens, sz, target * (w / total_w) * (1 - 1e-12)))
    plan = ReleasePlan(noise_type, tuple(fields))
    got = plan.cost.epsilon if noise_type == "laplace" else plan.cost.rho
    if got > target * (1 + 1e-9):
        raise PrivacyError(f"plan cost {got} exceeds target {target}")  # cannot happen; guards rounding
    return plan


def with_scale(release: FieldRelease, scale: float) -> FieldRelease:
    return replace(release, scale=scale, cost=vector_cost(release.noise_type, scale, release.sensitivity))
