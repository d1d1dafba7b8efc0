"""The coordinator's side of a federated round over Kafka: :class:`RoundCoordinator`.

It invites the stores, waits for their ``join``/``decline``, then runs one aggregation per level of
the public candidate domain (:mod:`include.federate.candidates`): secure mode drives a
:class:`SecAggServer` phase by phase (each phase closes when every expected store has answered or
``phase_timeout_seconds`` passed), local mode sums the stores' fully-noised vectors. Each level's
candidates are chosen from the previous level's noisy release. At the end it derives the global
patterns (:mod:`include.federate.aggregate`) and tells every store how the round ended
(``round_end``), which is when stores charge or release their budget reservation.

No Airflow and no database here: the registry, the audit trail and the live progress go through
:class:`CoordinatorHooks`; the DAG records the :class:`RoundResult` in the tables.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from include.federate import candidates as C
from include.federate.aggregate import GlobalPatternRow, LevelRelease, build_global_patterns, sum_sigma
from include.federate.keys import KeyRegistry, PartyIdentity
from include.federate.messages import MessageRejected, ReplayGuard, SignedMessage, verify_message
from include.federate.protocol import (T, RoundSpec, decode_i64, default_colluders, honest_min, level_round_id,
                                       release_plans, sign)
from include.federate.secagg import AggregationResult, Phase, RoundAborted, RoundConfig, SecAggServer
from include.federate.topics import INVITATIONS, RESULTS

log = logging.getLogger(__name__)

SECAGG_PHASES = (Phase.ADVERTISE_KEYS, Phase.SHARE_KEYS, Phase.MASKED_INPUT, Phase.CONSISTENCY_CHECK,
                 Phase.UNMASKING)


class CoordinatorHooks(Protocol):
    def registry(self) -> KeyRegistry: ...

    def audit(self, direction: str, msg: SignedMessage | None, **extra) -> None: ...

    def progress(self, **fields) -> None: ...


class RoundFailed(RuntimeError):
    def __init__(self, phase: str, reason: str) -> None:
        self.phase, self.reason = phase, reason
        super().__init__(f"{phase}: {reason}")


@dataclass
class RoundResult:
    status: str = "running"                  # completed | failed
    reason: str = ""
    failed_phase: str = ""
    joined: list = field(default_factory=list)
    declined: dict = field(default_factory=dict)
    not_answered: list = field(default_factory=list)
    threshold: int = 0
    colluders: int = 0
    levels: list = field(default_factory=list)          # per level: candidates, survivors, dropped, seconds
    included: dict = field(default_factory=dict)        # store party -> levels whose sum holds its input
    contributed: dict = field(default_factory=dict)     # store party -> number of candidate values
    releases: list = field(default_factory=list)        # LevelRelease
    proposals: dict = field(default_factory=dict)       # itemset size (str) -> number of store-proposed candidates
    patterns: list = field(default_factory=list)        # GlobalPatternRow
    summary: dict = field(default_factory=dict)
    cost: Any = None
    seconds: float = 0.0
    messages: dict = field(default_factory=lambda: {"sent": 0, "received": 0, "rejected": 0})


class RoundCoordinator:
    def __init__(self, spec: RoundSpec, identity: PartyIdentity, transport, hooks: CoordinatorHooks, *,
                 catalogue: Sequence[str], coordinator_offset: int, dropout_threshold: int | None = None,
                 top_k: int | None = 100, min_utility=None, min_utility_ratio: float | None = None,
                 keep_items: int = C.DEFAULT_KEEP_ITEMS, keep_pairs: int = C.DEFAULT_KEEP_PAIRS,
                 min_kept_subpairs: int = C.DEFAULT_MIN_KEPT_SUBPAIRS,
                 join_timeout_seconds: float | None = None) -> None:
        if identity.party_id != spec.coordinator_id:
            raise ValueError("identity is not the round's coordinator")
        self.spec, self.identity, self.transport, self.hooks = spec, identity, transport, hooks
        self.catalogue = sorted(set(catalogue))
        self.coordinator_offset = int(coordinator_offset)
        self.dropout_threshold = dropout_threshold
        self.top_k, self.min_utility, self.min_utility_ratio = top_k, min_utility, min_utility_ratio
        self.keep_items, self.keep_pairs, self.min_kept_subpairs = keep_items, keep_pairs, min_kept_subpairs
        self.phase_timeout = float(spec.phase_timeout_seconds)
        self.join_timeout = float(join_timeout_seconds or spec.phase_timeout_seconds)
        self.result = RoundResult()
        self.proposals: dict[int, set] = {}     # itemset size -> the stores' proposed candidates
        self._registry: KeyRegistry | None = None
        self._guard = ReplayGuard()
        self._reader = None

    @property
    def party_id(self) -> str:
        return self.identity.party_id

    # -- plumbing -----------------------------------------------------------------------------------
    def registry(self, reload: bool = False) -> KeyRegistry:
        if self._registry is None or reload:
            self._registry = self.hooks.registry()
        return self._registry

    def _publish(self, topic: str, msgs: Sequence[SignedMessage], partition: int | None = None,
                 key: str | None = None) -> None:
        for m in msgs:
            self.hooks.audit("sent", m)
        self.result.messages["sent"] += len(msgs)
        self.transport.publish_many(topic, msgs, partition=partition, key=key or self.spec.round_id)

    def _to_stores(self, msgs: Sequence[SignedMessage]) -> None:
        topic, partition, _ = self.spec.to_stores
        self._publish(topic, msgs, partition=int(partition))

    def _collect(self, handle: Callable[[SignedMessage], None], done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for rec in self._reader.poll(min(left, 0.5)):
                try:
                    msg = SignedMessage.from_json(rec.value)
                except MessageRejected as exc:
                    self.result.messages["rejected"] += 1
                    self.hooks.audit("rejected", None, code=exc.code, detail=exc.detail)
                    continue
                if msg.recipient != self.party_id or not (msg.round_id == self.spec.round_id or
                                                          msg.round_id.startswith(self.spec.round_id + "/")):
                    continue
                try:
                    handle(msg)
                except MessageRejected as exc:
                    self.result.messages["rejected"] += 1
                    log.warning("rejected %s from %s: %s", msg.msg_type, msg.sender, exc)
                    self.hooks.audit("rejected", msg, code=exc.code, detail=exc.detail)

    def _verify(self, msg: SignedMessage, **kw) -> SignedMessage:
        try:
            return verify_message(msg, self.registry(), **kw)
        except MessageRejected as exc:
            if exc.code != "unknown_sender":
                raise
            return verify_message(msg, self.registry(reload=True), **kw)

    # -- the round ----------------------------------------------------------------------------------
    def run(self) -> RoundResult:
        t0 = time.monotonic()
        r = self.result
        ctopic, cpart = self.spec.to_coordinator
        self._reader = self.transport.reader(ctopic, int(cpart), self.coordinator_offset)
        try:
            _, r.cost = release_plans(self.spec)
            self._invite()
            self._run_levels()
            r.patterns, r.summary = build_global_patterns(
                r.releases, utility_scale=int(self.spec.utility_scale), top_k=self.top_k,
                min_utility=self.min_utility, min_utility_ratio=self.min_utility_ratio)
            r.status = "completed"
            self._end("completed", "")
            self._publish(RESULTS, [sign(self.identity, T.ROUND_RESULTS, self.spec.round_id, {
                "round_number": self.spec.round_number, "mode": self.spec.mode,
                "epsilon": self.spec.epsilon, "delta": self.spec.delta,
                "participants": sorted(r.included), "summary": {k: str(v) for k, v in r.summary.items()},
                "patterns": [p.to_message() for p in r.patterns]})])
        except RoundFailed as exc:
            r.status, r.reason, r.failed_phase = "failed", exc.reason, exc.phase
            log.warning("round %s failed in %s: %s", self.spec.round_id, exc.phase, exc.reason)
            try:
                self._end("failed", f"{exc.phase}: {exc.reason}")
            except Exception:  # noqa: BLE001 - the failure itself is what gets recorded
                log.exception("could not broadcast round_end")
        finally:
            self._reader.close()
            r.seconds = time.monotonic() - t0
            self.hooks.progress(phase=r.status, reason=r.reason)
        return r

    def _end(self, status: str, reason: str) -> None:
        self._to_stores([sign(self.identity, T.ROUND_END, self.spec.round_id, {
            "status": status, "reason": reason[:2000],
            "included": {p: list(v) for p, v in sorted(self.result.included.items())}})])

    def _invite(self) -> None:
        r = self.result
        invited = list(self.spec.invited)
        msgs = [sign(self.identity, T.INVITATION, self.spec.round_id, self.spec.to_payload(), recipient=p)
                for p in invited]
        for m in msgs:
            self.hooks.audit("sent", m)
        r.messages["sent"] += len(msgs)
        for m in msgs:
            self.transport.publish(INVITATIONS, m, key=m.recipient, partition=0, flush=False)
        self.transport.flush()
        self.hooks.progress(phase="invite", level=0, answered=[])
        answers: dict[str, SignedMessage] = {}

        def handle(msg: SignedMessage) -> None:
            if msg.msg_type not in (T.JOIN, T.DECLINE):
                return
            msg = self._verify(msg, round_id=self.spec.round_id, msg_type=(T.JOIN, T.DECLINE), phase="invite",
                               sender=invited, recipient=self.party_id)
            if not self._guard.admit(msg) or msg.sender in answers:
                return
            self.hooks.audit("received", msg)
            r.messages["received"] += 1
            answers[msg.sender] = msg
            self.hooks.progress(phase="invite", answered=sorted(answers))

        self._collect(handle, lambda: len(answers) == len(invited), self.join_timeout)
        r.joined = sorted(p for p, m in answers.items() if m.msg_type == T.JOIN)
        self.proposals = {}
        if self.spec.proposal_epsilon:
            good = []
            for p in r.joined:
                try:
                    good.append(C.proposals_by_level([answers[p].payload.get("proposals")], 3))
                except ValueError as exc:
                    log.warning("round %s: proposals of %s dropped: %s", self.spec.round_id, p, exc)
            for by in good:
                for k, v in by.items():
                    self.proposals.setdefault(k, set()).update(v)
            r.proposals = {str(k): len(v) for k, v in sorted(self.proposals.items())}
        r.declined = {p: str(m.payload.get("reason", "")) for p, m in answers.items() if m.msg_type == T.DECLINE}
        r.not_answered = sorted(set(invited) - set(answers))
        n = len(r.joined)
        if n < max(2, int(self.spec.min_clients)):
            raise RoundFailed("invite", f"too few clients: {n} joined, min_clients_required is "
                                        f"{self.spec.min_clients} (declined: {len(r.declined)}, no answer: "
                                        f"{len(r.not_answered)})" + _reasons(r.declined))
        t = self.dropout_threshold or _default_t(n)
        if not (n // 2 < t <= n) or t < 2:
            raise RoundFailed("invite", f"too few clients for dropout_threshold t={t}: {n} joined "
                                        f"(secure aggregation needs n/2 < t <= n)")
        r.threshold, r.colluders = t, default_colluders(n)

    def _level_spec(self, level: int) -> dict:
        if level == 1:
            s = C.spec(1, items=self.catalogue)
        else:
            released = {rel.level: (rel.candidates, rel.utility) for rel in self.result.releases}
            s = C.next_spec(level, released, keep_items=self.keep_items, keep_pairs=self.keep_pairs,
                            min_kept_subpairs=self.min_kept_subpairs)
        return C.with_proposals(s, self.proposals.get(level, ()))

    def _run_levels(self) -> None:
        r = self.result
        plans, _ = release_plans(self.spec)
        active = list(r.joined)
        from include.privacy import mechanisms as M

        for level in range(1, int(self.spec.max_pattern_length) + 1):
            t_level = time.monotonic()
            cspec = self._level_spec(level)
            cands = C.generate(cspec)
            if not cands:
                log.info("level %d has no candidates: stopping", level)
                break
            if len(active) < r.threshold:
                raise RoundFailed(f"level {level}", f"too few clients left: {len(active)} < t={r.threshold}")
            plan = plans[level - 1]
            rid = level_round_id(self.spec.round_id, level)
            base = {"level": level, "candidates": cspec, "digest": C.digest(cands), "m": len(cands),
                    "clients": active, "threshold": r.threshold, "colluders": r.colluders}
            if self.spec.mode == "secure":
                total, survivors, dropped = self._secure_level(level, rid, active, len(cands), base)
                h = honest_min(r.threshold, r.colluders)
                var = {f.field: M.noise_variance(f.noise_type, M.share_scale(f.noise_type, f.scale, h))
                       for f in plan.fields}
            else:
                total, survivors, dropped = self._local_level(level, rid, active, len(cands), base)
                var = {f.field: M.noise_variance(f.noise_type, f.scale) for f in plan.fields}
            sigma = {k: sum_sigma(v, len(survivors)) for k, v in var.items()}
            r.releases.append(LevelRelease.from_total(level, cands, total, len(survivors), sigma))
            for p in survivors:
                r.included.setdefault(p, []).append(level)
                r.contributed[p] = r.contributed.get(p, 0) + len(cands)
            r.levels.append({"level": level, "candidates": len(cands), "vector_length": 3 * len(cands),
                             "clients": len(active), "survivors": len(survivors), "dropped": list(dropped),
                             "seconds": round(time.monotonic() - t_level, 3)})
            active = list(survivors)

    def _secure_level(self, level: int, rid: str, active: list, m: int, base: dict):
        r = self.result
        cfg = RoundConfig(round_id=rid, server_id=self.party_id, clients=tuple(active), vector_length=3 * m,
                          threshold=r.threshold, max_colluders=r.colluders)
        server = SecAggServer(cfg, self.identity, self.registry(reload=True))
        setup = server.round_setup()
        self._to_stores([sign(self.identity, T.LEVEL_OPEN, self.spec.round_id, {**base, "setup": setup.to_dict()})])

        def handle(msg: SignedMessage) -> None:
            if msg.round_id != rid:
                return
            if server.receive(msg):
                r.messages["received"] += 1
                self.hooks.audit("received", msg)
                self.hooks.progress(level=level, phase=server.phase, answered=sorted(server.received[server.phase]))

        result: AggregationResult | None = None
        for phase in SECAGG_PHASES:
            self.hooks.progress(level=level, phase=phase, answered=[])
            self._collect(handle, lambda: not server.pending(), self.phase_timeout)
            try:
                out = server.close_phase()
            except RoundAborted as exc:
                self._to_stores([server.abort_message()])
                raise RoundFailed(f"level {level} {exc.phase}", exc.reason) from None
            if isinstance(out, AggregationResult):
                result = out
                self._to_stores([server.result_message()])
            elif isinstance(out, dict):
                self._to_stores(list(out.values()))
            else:
                self._to_stores([out])
        assert result is not None
        return result.total, list(result.survivors), list(result.dropped)

    def _local_level(self, level: int, rid: str, active: list, m: int, base: dict):
        self._to_stores([sign(self.identity, T.LEVEL_OPEN, self.spec.round_id, {**base, "setup": None})])
        got: dict[str, np.ndarray] = {}

        def handle(msg: SignedMessage) -> None:
            if msg.round_id != rid or msg.msg_type != T.LOCAL_INPUT:
                return
            msg = self._verify(msg, round_id=rid, msg_type=T.LOCAL_INPUT, phase="level", sender=active,
                               recipient=self.party_id)
            if not self._guard.admit(msg):
                return
            if int(msg.payload.get("vector_length", -1)) != 3 * m:
                raise MessageRejected("invalid_payload", "vector_length does not match the level", message=msg)
            try:
                got[msg.sender] = decode_i64(msg.payload["vector"], 3 * m)
            except (KeyError, ValueError) as exc:
                raise MessageRejected("invalid_payload", str(exc), message=msg) from None
            self.result.messages["received"] += 1
            self.hooks.audit("received", msg)
            self.hooks.progress(level=level, phase="local_input", answered=sorted(got))

        self.hooks.progress(level=level, phase="local_input", answered=[])
        self._collect(handle, lambda: len(got) == len(active), self.phase_timeout)
        survivors = sorted(got)
        if len(survivors) < max(2, int(self.spec.min_clients)):
            raise RoundFailed(f"level {level} local_input",
                              f"too few clients sent their vector: {len(survivors)} < {self.spec.min_clients}")
        total = np.zeros(3 * m, dtype=np.int64)
        for p in survivors:
            total += got[p]
        return total, survivors, sorted(set(active) - set(survivors))


def _default_t(n: int) -> int:
    return max(2, -(-2 * n // 3))


def _reasons(declined: dict) -> str:
    if not declined:
        return ""
    first = sorted(declined.items())[:3]
    return "; declines: " + "; ".join(f"{p}: {why[:200]}" for p, why in first)


def patterns_table(rows: Sequence[GlobalPatternRow], n: int = 10) -> str:
    """A small text table of the top patterns (logs, the README's main job)."""
    lines = [f"{'rank':>4}  {'utility':>14}  {'±95%':>12}  {'support':>8}  {'stores':>6}  items"]
    for p in rows[:n]:
        half = (p.utility_ci_high - p.utility_ci_low) / 2
        lines.append(f"{p.pattern_rank:>4}  {p.aggregated_utility:>14}  {half:>12.2f}  {p.global_support:>8}  "
                     f"{p.contributing_stores:>6}  {', '.join(p.pattern_items)}{'' if p.confident else '  (?)'}")
    return "\n".join(lines)
