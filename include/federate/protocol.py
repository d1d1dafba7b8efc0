"""Round-level protocol messages around the secure aggregations, and the round's public parameters.

A federated round (id R = ``federated_rounds.id``) runs one aggregation per level of the candidate
domain (round id ``R/level-k`` for :mod:`include.federate.secagg`). Around them the coordinator and
the stores exchange these signed messages (same envelope as secagg, :mod:`include.federate.messages`):

| type | phase | from → to | payload |
|---|---|---|---|
| ``invitation`` | ``invite`` | coordinator → one store | the :class:`RoundSpec` (parameters, topics and offsets) |
| ``join`` / ``decline`` | ``invite`` | store → coordinator | ``{}`` / ``{"reason": ...}`` (budget, config) |
| ``level_open`` | ``level`` | coordinator → all | level, candidate spec and digest, clients, t, c, the signed secagg ``round_setup`` (secure mode) |
| ``local_input`` | ``level`` | store → coordinator | local mode: the store's fully noised vector (round id ``R/level-k``) |
| ``round_end`` | ``end`` | coordinator → all | ``status`` completed/failed, ``reason``, ``included`` levels per store |
| ``round_results`` | ``end`` | coordinator → results topic | the released global patterns |

Numbers that are not integers (ε, δ, scales) travel as decimal strings: signed messages carry no floats.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from include.federate.keys import PartyIdentity
from include.federate.messages import SignedMessage, sign_message

PROTOCOL_VERSION = 1


class T:
    INVITATION = "invitation"
    JOIN = "join"
    DECLINE = "decline"
    LEVEL_OPEN = "level_open"
    LOCAL_INPUT = "local_input"
    ROUND_END = "round_end"
    ROUND_RESULTS = "round_results"


PHASE_OF = {T.INVITATION: "invite", T.JOIN: "invite", T.DECLINE: "invite", T.LEVEL_OPEN: "level",
            T.LOCAL_INPUT: "level", T.ROUND_END: "end", T.ROUND_RESULTS: "end"}

MODES = ("secure", "local")
FIELDS = ("utility", "support", "presence")


def store_party(store_id) -> str:
    return f"store:{store_id}"


def store_of(party_id: str) -> str:
    if not party_id.startswith("store:"):
        raise ValueError(f"{party_id!r} is not a store party id")
    return party_id.split(":", 1)[1]


def coordinator_party(region_id=None) -> str:
    return f"coordinator:{region_id or 'global'}"


def level_round_id(round_id: str, level: int) -> str:
    return f"{round_id}/level-{level}"


def level_of(round_id: str, message_round_id: str) -> int | None:
    prefix = f"{round_id}/level-"
    if message_round_id.startswith(prefix):
        try:
            return int(message_round_id[len(prefix):])
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class RoundSpec:
    """Everything a store needs to decide and to compute its vectors; signed in the invitation."""

    round_id: str
    round_number: int
    coordinator_id: str
    mode: str
    noise_type: str
    epsilon: str                 # decimal string
    delta: str
    window_start: str            # ISO 8601
    window_end: str
    max_pattern_length: int
    max_items: int               # ℓ
    utility_cap: int             # C, fixed-point
    utility_scale: int
    split: dict                  # field -> decimal string
    invited: list                # store party ids
    min_clients: int
    phase_timeout_seconds: int
    to_stores: list              # [topic, partition, first offset]
    to_coordinator: list         # [topic, partition]
    version: int = PROTOCOL_VERSION
    key_fingerprint: str | None = None   # set: items are keyed ids under the chain key of this fingerprint
    proposal_epsilon: str | None = None  # set (> 0): stores propose candidates with this ε (threshold mechanism)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 1 <= int(self.max_pattern_length) <= 3:
            raise ValueError("max_pattern_length must be 1, 2 or 3 (the level-wise domain stops at triples)")

    # typed views
    @property
    def eps(self) -> float:
        return float(self.epsilon)

    @property
    def dlt(self) -> float:
        return float(self.delta)

    @property
    def window(self) -> tuple[datetime, datetime]:
        return datetime.fromisoformat(self.window_start), datetime.fromisoformat(self.window_end)

    @property
    def levels(self) -> list[tuple[int, ...]]:
        return [(k,) for k in range(1, int(self.max_pattern_length) + 1)]

    @property
    def split_floats(self) -> dict:
        return {k: float(v) for k, v in self.split.items()}

    def to_payload(self) -> dict:
        return asdict(self)

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> RoundSpec:
        if p.get("version") != PROTOCOL_VERSION:
            raise ValueError(f"unsupported round spec version {p.get('version')!r}")
        optional = {"key_fingerprint", "proposal_epsilon"}
        return cls(**{k: p[k] for k in cls.__dataclass_fields__ if k in p or k not in optional})


def release_plans(spec: RoundSpec):
    """The OpenDP plans of the round's levels (scales per field), recomputed by every party from the
    public parameters: a store never trusts announced scales, it derives its own from ε and δ. The
    cost includes the store-proposed candidates' release when the round has one (:func:`proposal_plan`)."""
    from include.privacy.apply import release_plan_for_round, sum_costs
    from include.privacy.bounding import Bounds

    bounds = Bounds(int(spec.max_items), int(spec.utility_cap), int(spec.utility_scale))
    plans = release_plan_for_round(spec.noise_type, spec.eps, spec.dlt, bounds, spec.levels, spec.split_floats)
    cost = sum_costs(plans)
    proposals = proposal_plan(spec)
    return plans, (cost + proposals.cost if proposals else cost)


# share of the round's δ given to the threshold mechanism of the store-proposed candidates
PROPOSAL_DELTA_SHARE = 0.1
MAX_PROPOSALS = 2000      # per store: the best noisy utilities among the released keys (post-processing)


@dataclass(frozen=True)
class ProposalPlan:
    """Store-proposed candidates (privacy brief §6 step 3b): each store releases the keys of the itemsets
    (size ≤ max_pattern_length) whose clipped utility plus noise clears ``threshold`` (OpenDP's threshold
    mechanism, ε = ``proposal_epsilon``, δ = PROPOSAL_DELTA_SHARE × the round's δ)."""

    sizes: tuple
    scale: float
    threshold: int
    cost: Any


def proposal_plan(spec: RoundSpec) -> ProposalPlan | None:
    if not spec.proposal_epsilon or float(spec.proposal_epsilon) <= 0:
        return None
    from include.privacy import mechanisms as M
    from include.privacy.sensitivity import field_sensitivity, max_itemsets_touched, normalize_sizes

    sizes = normalize_sizes(int(spec.max_pattern_length))
    delta_t = spec.dlt * PROPOSAL_DELTA_SHARE
    target = M.target_for(spec.noise_type, float(spec.proposal_epsilon),
                          spec.dlt - delta_t if spec.noise_type == "gaussian" else spec.dlt)
    sens = field_sensitivity("utility", int(spec.max_items), int(spec.utility_cap), sizes)
    l0 = max_itemsets_touched(int(spec.max_items), sizes)
    scale = M.calibrate_scale(spec.noise_type, sens, target * (1 - 1e-12))
    threshold = M.calibrate_threshold(spec.noise_type, scale, sens, l0, delta_t)
    return ProposalPlan(tuple(sizes), scale, threshold, M.threshold_cost(spec.noise_type, scale, threshold, sens, l0))


def propose_candidates(txs, spec: RoundSpec) -> list[list[str]]:
    """A store's proposals: the released keys over its clipped window (items as the round names them),
    best noisy utility first, at most MAX_PROPOSALS. Draws noise: reserve the round's cost first."""
    from include.privacy import mechanisms as M
    from include.privacy.vectors import all_itemset_utilities

    plan = proposal_plan(spec)
    util_map, _ = all_itemset_utilities(txs, plan.sizes, None)
    released = M.release_open_keys(util_map, spec.noise_type, plan.scale, plan.threshold)
    best = sorted(released.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_PROPOSALS]
    return [list(k) for k, _ in best]


def honest_min(threshold: int, colluders: int) -> int:
    return max(1, int(threshold) - int(colluders))


def default_colluders(n: int) -> int:
    return n // 10


def default_dropout_threshold(n: int) -> int:
    return max(2, math.ceil(2 * n / 3)) if n >= 2 else n


def sign(identity: PartyIdentity, msg_type: str, round_id: str, payload: Mapping[str, Any],
         recipient: str | None = None) -> SignedMessage:
    return sign_message(identity, round_id=round_id, phase=PHASE_OF[msg_type], msg_type=msg_type,
                        payload=dict(payload), recipient=recipient)


def fstr(x: float) -> str:
    """A float as a decimal string that round-trips (for signed payloads)."""
    return repr(float(x))


def encode_i64(values) -> str:
    import numpy as np

    from include.federate.keys import b64encode

    return b64encode(np.asarray(values, dtype="<i8").tobytes())


def decode_i64(text: str, length: int):
    import numpy as np

    from include.federate.keys import b64decode

    raw = b64decode(text, field="vector", length=8 * length)
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)


@dataclass
class Outcome:
    """What a store's client knows at the end of a round."""

    status: str = "running"          # running | completed | failed | declined | excluded
    reason: str = ""
    included_levels: list = field(default_factory=list)

    @property
    def charged(self) -> bool:
        return bool(self.included_levels)


def sorted_ids(ids: Sequence[str]) -> list[str]:
    return sorted(set(ids))
