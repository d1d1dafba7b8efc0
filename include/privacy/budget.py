"""Budget accounting over transaction windows (pure logic; the table lives in :mod:`.ledger`).

Every charge covers the transactions of one time window [window_start, window_end). A transaction's
privacy loss is the composition of the charges whose windows contain it, so:

* charges on disjoint windows compose in *parallel* (a transaction pays only for its own window);
* overlapping (e.g. rolling) windows compose sequentially on their overlap.

The spend that matters for a new charge is therefore the largest total over the elementary segments
(between consecutive window boundaries) inside its window. Aborted charges count nothing; reserved
and charged ones count.

A store configured with ``noise_type='laplace'`` keeps a *pure* ledger (ε's add; it refuses a zCDP
charge, which would void its pure guarantee); a store with ``noise_type='gaussian'`` keeps a zCDP ledger
(ρ's add, pure charges count ε²/2, thresholds' δ's add) whose total is converted to (ε, δ) by OpenDP.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .mechanisms import Cost, check_noise_type, rho_to_epsilon

# Relative slack when comparing float costs with a budget ("spending exactly the budget succeeds").
TOLERANCE = 1e-9
DEFAULT_DELTA = 1e-6


class BudgetExceeded(RuntimeError):
    """A release would exceed a budget; raised before any noise is drawn."""


@dataclass(frozen=True)
class Budget:
    """A store's lifetime budget per transaction and the platform's per-window cap."""

    epsilon: float                       # privacy_configs.epsilon
    noise_type: str                      # privacy_configs.noise_type -> accounting
    delta: float = DEFAULT_DELTA         # server_configs.privacy_delta
    global_epsilon: float | None = None  # server_configs.privacy_budget (None/0 = no chain-wide cap)

    def __post_init__(self) -> None:
        check_noise_type(self.noise_type)
        if not self.epsilon > 0:
            raise ValueError(f"privacy_configs.epsilon must be > 0, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise ValueError(f"privacy delta must be in (0, 1), got {self.delta}")
        if self.global_epsilon is not None and not self.global_epsilon > 0:
            raise ValueError(f"privacy_budget must be > 0 (or unset), got {self.global_epsilon}")

    @property
    def accounting(self) -> str:
        return "pure" if self.noise_type == "laplace" else "zcdp"


@dataclass(frozen=True)
class Charge:
    window_start: datetime
    window_end: datetime
    cost: Cost
    status: str = "charged"   # reserved | charged | aborted
    label: str = ""

    def __post_init__(self) -> None:
        if not self.window_end > self.window_start:
            raise ValueError(f"window_end ({self.window_end}) must be after window_start ({self.window_start})")
        if self.status not in ("reserved", "charged", "aborted"):
            raise ValueError(f"bad status {self.status!r}")

    def covers(self, a: datetime, b: datetime) -> bool:
        return self.window_start <= a and b <= self.window_end


def segments(charges: Iterable[Charge], window_start: datetime, window_end: datetime
             ) -> list[tuple[datetime, datetime, Cost]]:
    """The elementary segments of [window_start, window_end) with the composed cost of the live
    charges covering each."""
    live = [c for c in charges if c.status != "aborted"
            and c.window_start < window_end and c.window_end > window_start]
    points = {window_start, window_end}
    for c in live:
        for p in (c.window_start, c.window_end):
            if window_start < p < window_end:
                points.add(p)
    pts = sorted(points)
    out = []
    for a, b in zip(pts, pts[1:]):
        total: Cost | None = None
        for c in live:
            if c.covers(a, b):
                total = c.cost if total is None else total + c.cost
        out.append((a, b, total))
    return out


def zero_for(accounting: str) -> Cost:
    return Cost.zero(accounting)


@dataclass(frozen=True)
class Spend:
    """The worst segment of a window: its composed cost and its (ε, δ)."""

    cost: Cost
    epsilon: float
    delta: float
    segment: tuple[datetime, datetime] | None


def display(cost: Cost, budget: Budget) -> tuple[float, float]:
    """(ε, δ) of a composed cost for this budget's accounting."""
    if cost.accounting == "pure" and budget.accounting == "pure":
        return float(cost.epsilon), cost.delta
    return cost.approx_dp(budget.delta) if cost.rho > 0 else (0.0, cost.delta)


def worst_spend(charges: Iterable[Charge], window_start: datetime, window_end: datetime, budget: Budget
                ) -> Spend:
    best = Spend(zero_for(budget.accounting), 0.0, 0.0, None)
    for a, b, cost in segments(charges, window_start, window_end):
        if cost is None:
            continue
        eps, dl = _effective(cost, budget)
        if eps > best.epsilon or best.segment is None:
            best = Spend(cost, eps, dl, (a, b))
    return best


def _effective(cost: Cost, budget: Budget) -> tuple[float, float]:
    """(ε, δ) of a composed cost measured against ``budget`` (zCDP: converted at the δ left over
    after the thresholds' δ)."""
    if budget.accounting == "pure":
        if cost.accounting != "pure":
            return float("inf"), cost.delta
        return float(cost.epsilon), cost.delta
    if cost.delta >= budget.delta:
        return float("inf"), cost.delta
    return (rho_to_epsilon(cost.rho, budget.delta - cost.delta) if cost.rho > 0 else 0.0), budget.delta


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str
    before: Spend
    after_epsilon: float
    after_delta: float


def check(charges: Iterable[Charge], new: Charge, budget: Budget, store: str = "store") -> Decision:
    """Would ``new`` keep every transaction of its window within the store budget and the global cap?"""
    charges = list(charges)
    before = worst_spend(charges, new.window_start, new.window_end, budget)
    if budget.accounting == "pure" and new.cost.accounting != "pure":
        return Decision(False, f"{store} is configured for pure ε-DP (noise_type 'laplace'); a zCDP "
                               f"(gaussian) release would void that guarantee; refused", before,
                        float("inf"), new.cost.delta)
    worst_eps, worst_delta = 0.0, 0.0
    for a, b, cost in segments(charges + [new], new.window_start, new.window_end):
        if cost is None:
            continue
        eps, dl = _effective(cost, budget)
        if eps > worst_eps:
            worst_eps, worst_delta = eps, dl
        delta_over = (cost.delta >= budget.delta if budget.accounting == "zcdp"
                      else cost.delta > budget.delta * (1 + TOLERANCE))
        if delta_over:
            return Decision(False, f"{store}: the thresholds' δ on {a:%Y-%m-%d %H:%M}..{b:%Y-%m-%d %H:%M} "
                                   f"would reach {cost.delta:.3g}, the platform δ is {budget.delta:.3g}; refused",
                            before, eps, cost.delta)
        if eps > budget.epsilon * (1 + TOLERANCE):
            return Decision(False, _msg(store, "its lifetime budget (privacy_configs.epsilon)", budget.epsilon,
                                        before, new, eps, budget, a, b), before, eps, dl)
        if budget.global_epsilon is not None and eps > budget.global_epsilon * (1 + TOLERANCE):
            return Decision(False, _msg(store, "the global cap per window (server_configs.privacy_budget)",
                                        budget.global_epsilon, before, new, eps, budget, a, b), before, eps, dl)
    return Decision(True, "ok", before, worst_eps, worst_delta)


def _msg(store, what, limit, before: Spend, new: Charge, after_eps, budget: Budget, a, b) -> str:
    new_eps, _ = display(new.cost, budget)
    return (f"{store}: release refused before drawing any noise: it costs ε={new_eps:.6g} "
            f"({new.cost.accounting}, ρ={new.cost.rho:.6g}) on window "
            f"{new.window_start.isoformat()}..{new.window_end.isoformat()}, where transactions of "
            f"{a.isoformat()}..{b.isoformat()} have already spent ε={before.epsilon:.6g}; together "
            f"ε={after_eps:.6g} > {what} ε={limit:.6g} (δ={budget.delta:.3g})")


def remaining(charges: Iterable[Charge], window_start: datetime, window_end: datetime,
              budget: Budget) -> float:
    """What the worst transaction of the window has left, in the budget's own unit: ε (pure ledger)
    or ρ (zCDP ledger, at the δ left after the thresholds' δ); usable as a release target."""
    from .mechanisms import epsilon_to_rho
    spent = worst_spend(charges, window_start, window_end, budget).cost
    limit = budget.epsilon if budget.global_epsilon is None else min(budget.epsilon, budget.global_epsilon)
    if budget.accounting == "pure":
        if spent.accounting != "pure":
            return 0.0
        return max(0.0, limit - float(spent.epsilon))
    if spent.delta >= budget.delta:
        return 0.0
    return max(0.0, epsilon_to_rho(limit, budget.delta - spent.delta) - spent.rho)
