"""``apply_privacy``: a store's window (and mined patterns) -> a privatised contribution (local mode).

Two ways to choose what is released:

* ``candidates`` given (the round level's *public* candidate list, item names or keyed ids): the
  clipped utility, support and presence vectors over exactly those candidates, each with full discrete
  Laplace / Gaussian noise for the store's own budget. Every candidate gets a value, so the released
  *set* says nothing about the data.
* no candidates (store-proposed patterns, an open key set): the clipped utility of *every* itemset of
  size ≤ k in the window goes through OpenDP's threshold mechanism; only keys whose noisy utility clears
  the threshold are released, with a noisy support count for them. The locally mined patterns are *not*
  used to choose keys (a map restricted to them is not stable: one transaction can make a whole pattern
  appear), only to link released values to ``local_patterns`` rows.

Order of events: settings -> window data -> plan (scales, cost by OpenDP ``.map``) -> ledger
reservation (refused here if over budget, before any noise) -> noise -> ``privacy_applications`` rows and
ledger charge in one transaction -> the contribution. A retry of the same (store, round, release) returns
the already released values instead of drawing new noise.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from . import ledger as L
from . import mechanisms as M
from .bounding import Bounds, bound_transactions
from .budget import BudgetExceeded, display
from .hashing import HashKey, as_key
from .sensitivity import field_sensitivity, max_itemsets_touched, normalize_sizes
from .settings import PlatformSettings, PrivacyConfig, load_platform_settings, load_privacy_config
from .store_data import (fixed_to_decimal, iter_transactions, local_pattern_ids, scope_to_store,
                         write_applications)
from .vectors import all_itemset_utilities, canonical, candidate_vectors

log = logging.getLogger("include.privacy.apply")

MESSAGE_VERSION = 1


@dataclass(frozen=True)
class ReleasedPattern:
    items: tuple[str, ...]       # as released: keyed ids when hashing is on, else item names
    utility: int                 # noisy, fixed-point
    support: int | None = None   # noisy count
    presence: int | None = None  # noisy presence bit (public-candidate releases)


@dataclass(frozen=True)
class Contribution:
    """What a store hands to the federated round. Only noisy values and public parameters: no
    original values, no transaction counts, no keys."""

    store_id: str
    round_id: str | None
    release_name: str
    window_start: datetime
    window_end: datetime
    mode: str
    noise_type: str
    source: str                         # 'public_candidates' | 'threshold'
    hashed: bool
    utility_scale: int
    max_items: int
    utility_cap: int
    sizes: tuple[int, ...]
    patterns: tuple[ReleasedPattern, ...]
    stddev: dict = field(default_factory=dict)      # field -> noise standard deviation (fixed-point)
    threshold: int | None = None
    rho: float = 0.0
    epsilon: float = 0.0                # display ε of the release at `delta`
    delta: float = 0.0
    ledger_id: str | None = None

    def to_message(self) -> dict:
        return {
            "version": MESSAGE_VERSION, "store_id": self.store_id, "round_id": self.round_id,
            "release_name": self.release_name, "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(), "mode": self.mode, "noise_type": self.noise_type,
            "source": self.source, "hashed": self.hashed, "utility_scale": self.utility_scale,
            "max_items": self.max_items, "utility_cap": self.utility_cap, "sizes": list(self.sizes),
            "stddev": dict(self.stddev), "threshold": self.threshold, "rho": self.rho,
            "epsilon": self.epsilon, "delta": self.delta, "ledger_id": self.ledger_id,
            "patterns": [[list(p.items), p.utility, p.support, p.presence] for p in self.patterns],
        }

    @classmethod
    def from_message(cls, m: dict) -> "Contribution":
        if m.get("version") != MESSAGE_VERSION:
            raise ValueError(f"unsupported contribution message version {m.get('version')!r}")
        return cls(
            store_id=m["store_id"], round_id=m["round_id"], release_name=m["release_name"],
            window_start=datetime.fromisoformat(m["window_start"]), window_end=datetime.fromisoformat(m["window_end"]),
            mode=m["mode"], noise_type=m["noise_type"], source=m["source"], hashed=m["hashed"],
            utility_scale=m["utility_scale"], max_items=m["max_items"], utility_cap=m["utility_cap"],
            sizes=tuple(m["sizes"]), stddev=dict(m["stddev"]), threshold=m["threshold"], rho=m["rho"],
            epsilon=m["epsilon"], delta=m["delta"], ledger_id=m["ledger_id"],
            patterns=tuple(ReleasedPattern(tuple(p[0]), p[1], p[2], p[3]) for p in m["patterns"]))


def _sizes_for(candidates, max_pattern_length, conn, mining_job_id, platform: PlatformSettings):
    if candidates is not None:
        return normalize_sizes({len(c) for c in candidates}) if candidates else (1,)
    k = max_pattern_length
    if k is None and mining_job_id is not None:
        row = conn.execute("SELECT max_pattern_length FROM mining_jobs WHERE id = %s", (mining_job_id,)).fetchone()
        k = row[0] if row and row[0] else None
    return normalize_sizes(int(k or platform.max_pattern_length))


def apply_privacy(conn: psycopg.Connection, *, store_id, window_start: datetime, window_end: datetime,
                  mining_job_id=None, round_id=None, release_name: str = "contribution",
                  candidates: Sequence[Iterable[str]] | None = None, max_pattern_length: int | None = None,
                  epsilon: float | None = None, hash_key: HashKey | bytes | str | None = None,
                  mode: str = "local") -> Contribution:
    """Privatise the store's window into a contribution (local mode: full noise for the store's own ε).

    ``epsilon`` is this release's ε (default: the store's whole ``privacy_configs.epsilon``); the ledger
    refuses it if the window's transactions cannot afford it. ``hash_key`` is required when the store's
    config has ``hash_patterns``; it is only used in memory. Raises BudgetExceeded before any noise.
    """
    if mode != "local":
        raise ValueError("apply_privacy implements local mode; distributed mode uses noise_share()")
    if not window_end > window_start:
        raise ValueError(f"window_end ({window_end}) must be after window_start ({window_start})")
    if candidates is not None and len(candidates) == 0:
        raise ValueError("empty candidate list: nothing to release (and nothing is charged)")
    store_id = str(store_id)
    round_id = None if round_id is None else str(round_id)

    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ValueError("apply_privacy needs a connection outside any transaction: its ledger reservation "
                         "must be committed before noise is drawn")
    with conn.transaction():
        platform = load_platform_settings(conn)
        cfg = load_privacy_config(conn, store_id)
        previous = L.find_release(conn, store_id, round_id, release_name)
        sizes = _sizes_for(candidates, max_pattern_length, conn, mining_job_id, platform)
    budget = cfg.budget(platform)
    noise_type = cfg.noise_type
    key = as_key(hash_key) if cfg.hash_patterns else None

    if previous is not None and previous.status == "charged" and previous.output is not None:
        log.info("store %s round %s release %s already charged: returning the released values",
                 store_id, round_id, release_name)
        return Contribution.from_message(previous.output)

    bounds: Bounds = platform.bounds
    release_eps = float(epsilon if epsilon is not None else cfg.epsilon)

    txs = bound_transactions(list(iter_transactions(conn, store_id, window_start, window_end)), bounds)
    names_by_key: dict[str, str] = {}
    item_key = None
    if key is not None:
        for t in txs:
            for i in t.items:
                names_by_key.setdefault(key.item_id(i), i)
        item_key = key.item_id

    details = {"bounds": {"max_items": bounds.max_items, "utility_cap": bounds.utility_cap,
                          "utility_scale": bounds.utility_scale},
               "sizes": list(sizes), "release_epsilon": release_eps, "delta": platform.delta,
               "hashed": key is not None, "key_fingerprint": key.fingerprint if key else None}

    if candidates is not None:
        source = "public_candidates"
        target = M.target_for(noise_type, release_eps, platform.delta)
        plan = M.plan_vector_release(noise_type, bounds.max_items, bounds.utility_cap, sizes, target, platform.split)
        cost = plan.cost
        mechanism = "discrete_laplace" if noise_type == "laplace" else "discrete_gaussian"
        details["plan"] = plan.as_dict(platform.delta)
        vectors = candidate_vectors(txs, candidates, item_key)
        threshold = None
    else:
        source = "threshold"
        delta_t = platform.delta * platform.threshold_delta_share
        target = M.target_for(noise_type, release_eps, platform.delta - delta_t if noise_type == "gaussian"
                              else platform.delta)
        w = platform.split
        w_u = w.get("utility", 0) + w.get("presence", 0)
        w_s = w.get("support", 0)
        total_w = w_u + w_s
        u_sens = field_sensitivity("utility", bounds.max_items, bounds.utility_cap, sizes)
        l0 = max_itemsets_touched(bounds.max_items, sizes)
        u_scale = M.calibrate_scale(noise_type, u_sens, target * (w_u / total_w) * (1 - 1e-12))
        threshold = M.calibrate_threshold(noise_type, u_scale, u_sens, l0, delta_t)
        u_cost = M.threshold_cost(noise_type, u_scale, threshold, u_sens, l0)
        s_plan = (M.plan_field("support", noise_type, field_sensitivity("support", bounds.max_items, 1, sizes),
                               sizes, target * (w_s / total_w) * (1 - 1e-12)) if w_s > 0 else None)
        cost = u_cost + s_plan.cost if s_plan else u_cost
        mechanism = "laplace_threshold" if noise_type == "laplace" else "gaussian_threshold"
        details["plan"] = {"utility": {"scale": u_scale, "threshold": threshold, "l0": l0,
                                       "sensitivity": u_sens.as_dict(), "cost": u_cost.as_dict()},
                           "support": s_plan.as_dict() if s_plan else None,
                           "cost": cost.as_dict(platform.delta)}
        util_map, supp_map = all_itemset_utilities(txs, sizes, item_key)

    # -- the ledger: refuse before any noise ------------------------------------------------------
    entry = previous if (previous is not None and previous.status == "reserved") else None
    if entry is None:
        entry = L.reserve(conn, store_id=store_id, window_start=window_start, window_end=window_end, cost=cost,
                          mechanism=mechanism, budget=budget, round_id=round_id, release_name=release_name,
                          mode=mode, details=details, store_label=f"store {store_id}")
    elif abs(entry.cost.rho - cost.rho) > 1e-12 * max(1.0, cost.rho):
        raise L.LedgerError(f"reservation {entry.id} was made for a different plan; abort it first")
    eps_d, delta_d = display(cost, budget)

    try:
        if source == "public_candidates":
            fr = {f.field: f for f in plan.fields}
            noisy = {name: M.add_noise(vectors.field(name), noise_type, fr[name].scale) for name in fr}
            patterns = tuple(
                ReleasedPattern(c, noisy["utility"][k] if "utility" in noisy else 0,
                                noisy["support"][k] if "support" in noisy else None,
                                noisy["presence"][k] if "presence" in noisy else None)
                for k, c in enumerate(vectors.candidates))
            originals = {c: (vectors.utility[k], vectors.support[k]) for k, c in enumerate(vectors.candidates)}
            stddev = {name: fr[name].stddev for name in fr}
        else:
            released = M.release_open_keys(util_map, noise_type, u_scale, threshold)
            keys = sorted(released)
            supp = (M.add_noise([supp_map[k] for k in keys], noise_type, s_plan.scale) if s_plan
                    else [None] * len(keys))
            patterns = tuple(ReleasedPattern(k, released[k], supp[n], None) for n, k in enumerate(keys))
            originals = {k: (util_map[k], supp_map[k]) for k in keys}
            stddev = {"utility": M.noise_variance(noise_type, u_scale) ** 0.5}
            if s_plan:
                stddev["support"] = s_plan.stddev
    except Exception as e:
        L.abort_charge(conn, entry.id, f"noise step failed: {type(e).__name__}: {e}")
        raise

    contribution = Contribution(
        store_id=store_id, round_id=round_id, release_name=release_name, window_start=window_start,
        window_end=window_end, mode=mode, noise_type=noise_type, source=source, hashed=key is not None,
        utility_scale=bounds.utility_scale, max_items=bounds.max_items, utility_cap=bounds.utility_cap,
        sizes=tuple(sizes), patterns=patterns, stddev=stddev, threshold=threshold, rho=cost.rho,
        epsilon=eps_d, delta=delta_d, ledger_id=str(entry.id))

    # -- privacy_applications + charge, atomically --------------------------------------------------
    pattern_ids = local_pattern_ids(conn, store_id, mining_job_id)
    scale = bounds.utility_scale

    def names_of(items: tuple[str, ...]) -> tuple[str, ...] | None:
        if key is None:
            return items
        names = [names_by_key.get(h) for h in items]
        return None if any(n is None for n in names) else tuple(sorted(names))

    def rows():
        for p in patterns:
            orig_u, orig_s = originals[p.items]
            names = names_of(p.items)
            yield (store_id, pattern_ids.get(names) if names else None, fixed_to_decimal(orig_u, scale),
                   fixed_to_decimal(p.utility, scale), fixed_to_decimal(p.utility - orig_u, scale), eps_d,
                   str(entry.id), round_id, list(p.items), len(p.items), orig_s, p.support, p.presence,
                   delta_d, noise_type)

    try:
        with conn.transaction():
            n = write_applications(conn, store_id, rows())
            L.commit_charge(conn, entry.id, contribution.to_message())
    except Exception as e:
        # nothing left the store: the reservation can be released and a retry draws afresh
        L.abort_charge(conn, entry.id, f"recording failed: {type(e).__name__}: {e}")
        raise
    log.info("store %s: released %d values (%s, %s), ε=%.4g δ=%.3g, ledger %s", store_id, n, source,
             noise_type, eps_d, delta_d, entry.id)
    return contribution


def release_plan_for_round(noise_type: str, epsilon: float, delta: float, bounds: Bounds, levels: Sequence,
                           split: dict | None = None) -> list[M.ReleasePlan]:
    """For the federated round (issue 8): one vector plan per level, the round's ε split evenly across
    levels (each level's sizes, e.g. ``[(1,), (2,), (3,)]``). Costs are those of the aggregate
    mechanism; stores add ``M.noise_share(values, noise_type, field.scale, t - c)``. The sum of the plans'
    costs is the round's charge per store (``sum_costs``)."""
    target = M.target_for(noise_type, epsilon, delta) / len(levels)
    return [M.plan_vector_release(noise_type, bounds.max_items, bounds.utility_cap, sizes, target * (1 - 1e-12),
                                  split) for sizes in levels]


def sum_costs(plans: Iterable[M.ReleasePlan]) -> M.Cost:
    total = None
    for p in plans:
        total = p.cost if total is None else total + p.cost
    if total is None:
        raise ValueError("no plans")
    return total


__all__ = ["apply_privacy", "Contribution", "ReleasedPattern", "BudgetExceeded", "release_plan_for_round",
           "sum_costs"]
