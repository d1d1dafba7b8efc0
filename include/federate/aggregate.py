"""From the decoded noisy sums of each level to the released global patterns (post-processing only).

For each candidate X the coordinator holds Û(X) (utility, fixed-point), N̂(X) (support count) and
P̂(X) (number of stores holding X), each the exact sum of the surviving stores' noisy vectors. Then
(privacy brief §6 step 8):

* ``aggregated_utility`` = max(Û, 0) in currency units, with the noise standard deviation σ_U and the
  95 % interval Û ± 1.96 σ_U (lower end clamped at 0);
* ``global_support`` = max(round(N̂), 0);
* ``contributing_stores`` = clamp(round(P̂), 0, n_survivors), ``client_coverage_percent`` = 100 ·
  contributing / n_survivors;
* candidates below the noise floor (Û < z σ_U, z = max(2, Φ⁻¹(1 − 1/m)) for the level's m candidates)
  are not released;
* ranking by Û; the released set is every candidate with Û ≥ the threshold (``min_utility``, or
  ``min_utility_ratio`` × the noisy total utility, the sum of level 1), at most ``top_k`` of them;
* ``confident`` when Û − 1.96 σ_U clears the threshold (without one: the top-k boundary).

σ comes from the plan: a store's noise variance times the number of summed stores.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class LevelRelease:
    """The decoded sums of one level over its ordered candidates."""

    level: int
    candidates: tuple[tuple[str, ...], ...]
    utility: np.ndarray      # int64, fixed-point
    support: np.ndarray      # int64
    presence: np.ndarray     # int64
    n_stores: int            # stores whose noisy vectors are in the sums
    sigma: dict = field(default_factory=dict)   # field -> standard deviation of the summed noise

    @classmethod
    def from_total(cls, level: int, candidates, total: np.ndarray, n_stores: int, sigma: dict) -> LevelRelease:
        m = len(candidates)
        total = np.asarray(total, dtype=np.int64)
        if total.shape != (3 * m,):
            raise ValueError(f"level {level}: expected a vector of {3 * m} entries, got {total.shape}")
        return cls(level, tuple(tuple(c) for c in candidates), total[:m].copy(), total[m:2 * m].copy(),
                   total[2 * m:].copy(), int(n_stores), dict(sigma))


@dataclass(frozen=True)
class GlobalPatternRow:
    pattern_items: list[str]
    aggregated_utility: Decimal
    global_support: Decimal
    contributing_stores: int
    client_coverage_percent: Decimal
    utility_stddev: Decimal
    utility_ci_low: Decimal
    utility_ci_high: Decimal
    confident: bool
    pattern_rank: int
    pattern_length: int

    def to_message(self) -> dict:
        """JSON form for the results topic (numbers as strings: protocol messages carry no floats)."""
        return {"items": list(self.pattern_items), "aggregated_utility": str(self.aggregated_utility),
                "global_support": str(self.global_support), "contributing_stores": self.contributing_stores,
                "client_coverage_percent": str(self.client_coverage_percent),
                "utility_stddev": str(self.utility_stddev), "utility_ci95": [str(self.utility_ci_low),
                                                                             str(self.utility_ci_high)],
                "confident": self.confident, "rank": self.pattern_rank}


def _money(units: float, scale: int) -> Decimal:
    return (Decimal(repr(float(units))) / Decimal(scale)).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def noisy_total_utility(releases: Sequence[LevelRelease]) -> float:
    """Σ_items Û(item) of level 1 = the noisy total (clipped) utility of every transaction (free)."""
    for r in releases:
        if r.level == 1:
            return float(max(0, int(r.utility.sum())))
    return 0.0


def build_global_patterns(releases: Sequence[LevelRelease], *, utility_scale: int, top_k: int | None = 100,
                          min_utility: Decimal | float | None = None, min_utility_ratio: float | None = None,
                          noise_floor_z: float | None = None) -> tuple[list[GlobalPatternRow], dict]:
    """The released patterns (best first) and a summary (threshold used, counts).

    Noise floor: a candidate whose noisy utility is below z·σ_U of its level is not released (it is
    indistinguishable from an itemset nobody bought; without the floor, on small data the noise of
    thousands of level-3 candidates alone fills the top of the ranking). ``noise_floor_z`` None: per
    level z = max(2, Φ⁻¹(1 − 1/m)) for m candidates, so about one pure-noise candidate per level
    clears it."""
    if min_utility is not None:
        threshold_units = float(Decimal(str(min_utility)) * utility_scale)
    elif min_utility_ratio is not None:
        threshold_units = float(min_utility_ratio) * noisy_total_utility(releases)
    else:
        threshold_units = None
    rows = []
    for r in releases:
        sigma_u = float(r.sigma.get("utility", 0.0))
        z = noise_floor_z if noise_floor_z is not None else floor_z(len(r.candidates))
        floor = z * sigma_u
        for k, c in enumerate(r.candidates):
            if int(r.utility[k]) >= floor:
                rows.append((int(r.utility[k]), r, k, sigma_u))
    rows.sort(key=lambda x: (-x[0], x[1].level, x[2]))
    if threshold_units is not None:
        rows = [x for x in rows if x[0] >= threshold_units]
    if top_k is not None:
        rows = rows[: int(top_k)]
    bar = threshold_units if threshold_units is not None else (rows[-1][0] if rows else 0.0)
    out = []
    for rank, (u, r, k, sigma_u) in enumerate(rows, start=1):
        n = max(1, r.n_stores)
        contributing = int(min(max(round(int(r.presence[k])), 0), r.n_stores))
        u_pos = max(u, 0)
        lo, hi = max(0.0, u - Z95 * sigma_u), max(0.0, u + Z95 * sigma_u)
        out.append(GlobalPatternRow(
            pattern_items=list(r.candidates[k]), aggregated_utility=_money(u_pos, utility_scale),
            global_support=Decimal(max(int(r.support[k]), 0)), contributing_stores=contributing,
            client_coverage_percent=(Decimal(100 * contributing) / Decimal(n)).quantize(Decimal("0.01")),
            utility_stddev=_money(sigma_u, utility_scale), utility_ci_low=_money(lo, utility_scale),
            utility_ci_high=_money(hi, utility_scale), confident=bool(u - Z95 * sigma_u >= bar and u > 0),
            pattern_rank=rank, pattern_length=len(r.candidates[k])))
    summary = {"threshold_units": threshold_units, "released": len(out),
               "confident": sum(1 for p in out if p.confident),
               "candidates": sum(len(r.candidates) for r in releases)}
    return out, summary


def floor_z(m: int) -> float:
    """max(2, Φ⁻¹(1 − 1/m)): the z above which about one of m pure-noise values lies."""
    from statistics import NormalDist

    return max(2.0, NormalDist().inv_cdf(1.0 - 1.0 / max(2, int(m))))


def sum_sigma(per_store_variance: float, n_stores: int) -> float:
    return math.sqrt(max(0.0, per_store_variance) * max(0, n_stores))
