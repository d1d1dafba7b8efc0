"""Privacy settings: the store's ``privacy_configs`` row and the platform's ``server_configs`` rows.

| server_configs key                    | meaning                                  | default when 0 / missing |
|---------------------------------------|------------------------------------------|--------------------------|
| privacy_max_items_per_transaction     | ℓ, items kept per transaction            | 12                       |
| privacy_max_transaction_utility       | C, in currency units                     | 200                      |
| privacy_utility_scale                 | fixed-point units per currency unit      | 100 (cents)              |
| global_delta                          | platform δ                               | 1e-6                     |
| privacy_budget                        | chain-wide ε cap per transaction window  | none (0 = no cap)        |
| privacy_noise_split                   | budget share per released vector         | utility .6, support .3, presence .1 |
| privacy_threshold_delta_share         | share of δ an open-domain release uses   | 0.1                      |
| max_pattern_length                    | k when the caller gives none             | 3                        |
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import psycopg

from .bounding import DEFAULT_MAX_ITEMS, DEFAULT_UTILITY_CAP, DEFAULT_UTILITY_SCALE, Bounds, to_fixed_point
from .budget import DEFAULT_DELTA, Budget
from .mechanisms import DEFAULT_SPLIT

DEFAULT_MAX_PATTERN_LENGTH = 3
DEFAULT_THRESHOLD_DELTA_SHARE = 0.1

KEY_MAX_ITEMS = "privacy_max_items_per_transaction"
KEY_UTILITY_CAP = "privacy_max_transaction_utility"
KEY_UTILITY_SCALE = "privacy_utility_scale"
KEY_DELTA = "global_delta"
KEY_GLOBAL_BUDGET = "privacy_budget"
KEY_SPLIT = "privacy_noise_split"
KEY_THRESHOLD_DELTA_SHARE = "privacy_threshold_delta_share"
KEY_MAX_PATTERN_LENGTH = "max_pattern_length"


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class PlatformSettings:
    bounds: Bounds = field(default_factory=Bounds)
    delta: float = DEFAULT_DELTA
    global_epsilon: float | None = None
    split: dict = field(default_factory=lambda: dict(DEFAULT_SPLIT))
    threshold_delta_share: float = DEFAULT_THRESHOLD_DELTA_SHARE
    max_pattern_length: int = DEFAULT_MAX_PATTERN_LENGTH


@dataclass(frozen=True)
class PrivacyConfig:
    store_id: str
    epsilon: float
    noise_type: str
    hash_patterns: bool

    def budget(self, platform: PlatformSettings) -> Budget:
        return Budget(self.epsilon, self.noise_type, platform.delta, platform.global_epsilon)


def _configs(conn: psycopg.Connection) -> dict[str, tuple[str, str]]:
    rows = conn.execute("SELECT config_key, config_value, data_type FROM server_configs").fetchall()
    return {k: (v, t) for k, v, t in rows}


def _number(cfg, key, default):
    if key not in cfg:
        return default
    text = cfg[key][0]
    try:
        v = Decimal(text)
    except Exception:
        raise SettingsError(f"server_configs.{key}: {text!r} is not a number") from None
    return default if v == 0 else v


def load_platform_settings(conn: psycopg.Connection) -> PlatformSettings:
    import json
    cfg = _configs(conn)
    scale = int(_number(cfg, KEY_UTILITY_SCALE, DEFAULT_UTILITY_SCALE))
    ell = int(_number(cfg, KEY_MAX_ITEMS, DEFAULT_MAX_ITEMS))
    cap_cur = _number(cfg, KEY_UTILITY_CAP, None)
    cap = DEFAULT_UTILITY_CAP * scale // DEFAULT_UTILITY_SCALE if cap_cur is None else to_fixed_point(cap_cur, scale)
    g = _number(cfg, KEY_GLOBAL_BUDGET, None)
    split = dict(DEFAULT_SPLIT)
    if KEY_SPLIT in cfg:
        try:
            split = {str(k): float(v) for k, v in json.loads(cfg[KEY_SPLIT][0]).items()}
        except (ValueError, AttributeError):
            raise SettingsError(f"server_configs.{KEY_SPLIT} must be a JSON object of field -> share") from None
        unknown = set(split) - set(DEFAULT_SPLIT)
        if unknown:
            raise SettingsError(f"server_configs.{KEY_SPLIT}: unknown fields {sorted(unknown)}")
    return PlatformSettings(
        bounds=Bounds(ell, cap, scale),
        delta=float(_number(cfg, KEY_DELTA, DEFAULT_DELTA)),
        global_epsilon=None if g is None else float(g),
        split=split,
        threshold_delta_share=float(_number(cfg, KEY_THRESHOLD_DELTA_SHARE, DEFAULT_THRESHOLD_DELTA_SHARE)),
        max_pattern_length=int(_number(cfg, KEY_MAX_PATTERN_LENGTH, DEFAULT_MAX_PATTERN_LENGTH)),
    )


def load_privacy_config(conn: psycopg.Connection, store_id) -> PrivacyConfig:
    row = conn.execute(
        "SELECT epsilon, noise_type, hash_patterns FROM privacy_configs WHERE store_id = %s "
        "ORDER BY updated_at DESC NULLS LAST, created_at DESC NULLS LAST LIMIT 1", (store_id,)).fetchone()
    if row is None:
        raise SettingsError(f"store {store_id} has no privacy_configs row: it cannot release anything")
    eps, noise_type, hashed = row
    if eps is None or Decimal(eps) <= 0:
        raise SettingsError(f"privacy_configs.epsilon of store {store_id} must be > 0, got {eps}")
    return PrivacyConfig(str(store_id), float(eps), noise_type or "laplace", bool(hashed))
