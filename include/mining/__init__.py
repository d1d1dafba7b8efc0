"""High-utility itemset (HUI) mining engine: compiled core (`huim_engine`, built from
`native/huim`) and its Python API. No Airflow imports. See docs/mining.md.

    from include.mining import mine, Miner, Pattern

Names are resolved lazily so that `python -m include.mining` starts fast.
"""

from __future__ import annotations

__all__ = [
    "Pattern",
    "MiningStats",
    "MiningResult",
    "Miner",
    "mine",
    "mine_batches",
    "InputError",
    "TooManyPatterns",
    "UtilityOverflow",
    "brute_force_mine",
]


def __getattr__(name: str):
    if name == "brute_force_mine":
        from .reference import brute_force_mine

        return brute_force_mine
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
