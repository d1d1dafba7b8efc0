"""Differential privacy for the platform (issue 7): contribution bounding, sensitivities, OpenDP
mechanisms, the per-store budget ledger, keyed hashing and the ``apply_privacy`` step.

No Airflow imports; noise only from OpenDP; keys only from arguments. See docs/privacy.md.

Imports are lazy so that ``import include.privacy`` stays cheap at DAG parse time.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    # bounding
    "Transaction": "bounding", "Bounds": "bounding", "BoundedTransaction": "bounding",
    "bound_transaction": "bounding", "bound_transactions": "bounding", "suggest_bounds": "bounding",
    "to_fixed_point": "bounding", "from_fixed_point": "bounding",
    # sensitivities
    "Sensitivity": "sensitivity", "utility_sensitivity": "sensitivity", "support_sensitivity": "sensitivity",
    "presence_sensitivity": "sensitivity", "field_sensitivity": "sensitivity",
    "max_itemsets_touched": "sensitivity",
    # vectors
    "candidate_vectors": "vectors", "CandidateVectors": "vectors", "canonical": "vectors",
    # mechanisms
    "Cost": "mechanisms", "add_noise": "mechanisms", "noise_share": "mechanisms", "share_scale": "mechanisms",
    "vector_cost": "mechanisms", "calibrate_scale": "mechanisms", "plan_vector_release": "mechanisms",
    "ReleasePlan": "mechanisms", "FieldRelease": "mechanisms", "target_for": "mechanisms",
    "rho_to_epsilon": "mechanisms", "epsilon_to_rho": "mechanisms", "release_open_keys": "mechanisms",
    "threshold_cost": "mechanisms", "calibrate_threshold": "mechanisms", "noise_variance": "mechanisms",
    # budget and ledger
    "Budget": "budget", "BudgetExceeded": "budget", "Charge": "budget",
    "reserve": "ledger", "commit_charge": "ledger", "abort_charge": "ledger", "abort_round": "ledger",
    "spent": "ledger", "headroom": "ledger",
    # hashing
    "HashKey": "hashing", "HashDecoder": "hashing", "HMAC_CONN_ID": "hashing",
    # settings and the task step
    "load_platform_settings": "settings", "load_privacy_config": "settings",
    "apply_privacy": "apply", "Contribution": "apply", "ReleasedPattern": "apply",
    "release_plan_for_round": "apply", "sum_costs": "apply",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'include.privacy' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
