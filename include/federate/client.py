"""A store's side of one federated round: :class:`StoreRoundClient` (a state machine fed with the
coordinator's messages) and :func:`run_store_agent` (a blocking Kafka loop around it, used by the
tests and the benchmark; the ``federated_client`` DAG drives the same state machine with deferrable
waits between messages).

What a store does (privacy brief §6, steps 2–4 and 9):

1. ``invitation``: verify it (pinned coordinator key), recompute the round's OpenDP plan from ε, δ,
   (ℓ, C) and the levels, reserve its cost in the store's ledger (refused → ``decline``, no noise
   drawn), answer ``join``.
2. ``level_open``: regenerate the level's public candidates and check their digest, compute over the
   window's *bounded* transactions the utility, support and presence vectors, add noise (secure mode:
   a discrete Gaussian/Laplace *share* of variance σ²/(t−c); local mode: the full noise), and either
   start the secure aggregation (``advertise_keys``) or send the noisy vector (``local_input``).
3. secure-aggregation messages of the level: answered by :class:`SecAggClient`.
4. ``round_end``: charge the reservation if the store's input was in at least one unmasked sum (the
   coordinator learnt something from it), release it otherwise (no output, no cost); forget every
   secret.

No Airflow here; store data, ledger, key registry and audit go through a :class:`StoreSide`.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from include.federate import candidates as C
from include.federate.keys import KeyRegistry, PartyIdentity
from include.federate.messages import MessageRejected, SignedMessage, verify_message
from include.federate.protocol import (T, Outcome, RoundSpec, decode_i64, encode_i64, honest_min, level_of,
                                       level_round_id, propose_candidates, release_plans, sign)
from include.federate.secagg import ClientExcluded, MsgType, ProtocolError, RoundAborted, SecAggClient

log = logging.getLogger(__name__)


class StoreSide(Protocol):
    """What the client needs from its store (database-backed in the DAG, in memory in the bench)."""

    store_id: str

    def registry(self) -> KeyRegistry: ...

    def bounded_transactions(self, spec: RoundSpec) -> list: ...

    def reserve(self, spec: RoundSpec, cost) -> str | None: ...

    def commit(self, ledger_id: str | None, spec: RoundSpec, outcome: Outcome) -> None: ...

    def abort(self, ledger_id: str | None, spec: RoundSpec, reason: str) -> None: ...

    def audit(self, direction: str, msg: SignedMessage | None, **extra) -> None: ...


def _parse(message: Any) -> SignedMessage:
    if isinstance(message, SignedMessage):
        return message
    if isinstance(message, (bytes, str)):
        return SignedMessage.from_json(message)
    return SignedMessage.from_dict(message)


def candidate_counts(txs, cands) -> dict[str, list[int]]:
    """Clipped utility, support and presence over ``cands`` (one level: all of one size).

    Same values as :func:`include.privacy.vectors.candidate_vectors`, faster: each transaction is first
    restricted to the items that occur in some candidate, so a level over the kept items enumerates
    far fewer subsets."""
    import itertools

    index = {tuple(c): k for k, c in enumerate(cands)}
    sizes = {len(c) for c in index}
    if len(sizes) > 1:
        from include.privacy.vectors import candidate_vectors

        v = candidate_vectors(txs, cands)
        return {"utility": list(v.utility), "support": list(v.support), "presence": list(v.presence)}
    j = sizes.pop() if sizes else 1
    universe = {i for c in index for i in c}
    utility = [0] * len(index)
    support = [0] * len(index)
    for tx in txs:
        kept = [(i, u) for i, u in zip(tx.items, tx.utilities) if i in universe]
        if len(kept) < j:
            continue
        if j == 1:
            for i, u in kept:
                k = index.get((i,))
                if k is not None:
                    utility[k] += u
                    support[k] += 1
            continue
        for combo in itertools.combinations(kept, j):
            k = index.get(tuple(p[0] for p in combo))
            if k is not None:
                utility[k] += sum(p[1] for p in combo)
                support[k] += 1
    return {"utility": utility, "support": support, "presence": [1 if s > 0 else 0 for s in support]}


def level_vector(txs, cands, noise_type: str, plan, *, mode: str, t_minus_c: int) -> np.ndarray:
    """[utility | support | presence] over ``cands`` with this store's noise (share or full)."""
    from include.privacy import mechanisms as M

    vec = candidate_counts(txs, cands)
    parts = []
    for name in ("utility", "support", "presence"):
        values = list(vec[name])
        try:
            fr = plan.field_release(name)
        except KeyError:           # a field with weight 0 is not released: zeros, no noise
            parts.append(np.zeros(len(values), dtype=np.int64))
            continue
        if mode == "secure":
            noisy = M.noise_share(values, noise_type, fr.scale, t_minus_c)
        else:
            noisy = M.add_noise(values, noise_type, fr.scale)
        parts.append(np.asarray(noisy, dtype=np.int64))
    return np.concatenate(parts)


class StoreRoundClient:
    """One store in one round. Feed it the coordinator's messages with :meth:`handle`; publish what
    it returns to the coordinator topic. Persist with :meth:`to_state` (holds the level's secret
    keys: keep it at the store, encrypted) and :meth:`from_state`."""

    def __init__(self, identity: PartyIdentity, side: StoreSide, invitation: Any, *,
                 coordinators: tuple[str, ...] | None = None) -> None:
        self.identity = identity
        self.side = side
        msg = _parse(invitation)
        allowed = coordinators or tuple(p for p in side.registry() if p.startswith("coordinator:"))
        self.invitation = verify_message(msg, side.registry(), round_id=msg.round_id, msg_type=T.INVITATION,
                                         phase="invite", sender=allowed, recipient=identity.party_id)
        self.spec = RoundSpec.from_payload(self.invitation.payload)
        if self.spec.coordinator_id != self.invitation.sender or self.spec.round_id != self.invitation.round_id:
            raise MessageRejected("invalid_payload", "round spec disagrees with the envelope", message=msg)
        self.round_id = self.spec.round_id
        self.coordinator_id = self.invitation.sender
        self.outcome = Outcome()
        self.status = "invited"
        self.ledger_id: str | None = None
        self.level = 0
        self.secagg: SecAggClient | None = None
        self.noisy: dict[int, np.ndarray] = {}
        self.handled: dict[str, str] = {}    # message id -> "" (already processed)
        self._plans = None
        self._txs = None

    # -- helpers ------------------------------------------------------------------------------------
    @property
    def party_id(self) -> str:
        return self.identity.party_id

    @property
    def finished(self) -> bool:
        return self.status in ("declined", "done")

    def plans(self):
        if self._plans is None:
            self._plans = release_plans(self.spec)
        return self._plans

    def _send(self, msg: SignedMessage, out: list) -> None:
        self.side.audit("sent", msg)
        out.append(msg)

    # -- invitation ---------------------------------------------------------------------------------
    def start(self) -> list[SignedMessage]:
        """Budget check and answer (``join`` or ``decline``); idempotent."""
        out: list[SignedMessage] = []
        if self.status != "invited":
            return out
        self.side.audit("received", self.invitation)
        payload: dict = {}
        try:
            plans, cost = self.plans()
            self.ledger_id = self.side.reserve(self.spec, cost)
            if self.spec.proposal_epsilon:
                # store-proposed candidates: noise is drawn only now, after the reservation
                self._txs = self.side.bounded_transactions(self.spec)
                payload["proposals"] = propose_candidates(self._txs, self.spec)
        except Exception as exc:  # noqa: BLE001 - any refusal (budget, config) is a decline with its reason
            if self.ledger_id:   # nothing left the store: the reservation is released
                self.side.abort(self.ledger_id, self.spec, f"declined: {type(exc).__name__}: {exc}"[:1000])
                self.ledger_id = None
            reason = f"{type(exc).__name__}: {exc}"
            self.status = "declined"
            self.outcome = Outcome("declined", reason)
            self._send(sign(self.identity, T.DECLINE, self.round_id, {"reason": reason[:2000]},
                            recipient=self.coordinator_id), out)
            return out
        self.status = "joined"
        if "proposals" in payload:
            self.outcome.included_levels.append(0)   # level 0 = the proposals: released, so charged at the end
        self._send(sign(self.identity, T.JOIN, self.round_id, payload, recipient=self.coordinator_id), out)
        return out

    # -- messages -----------------------------------------------------------------------------------
    def handle(self, message: Any) -> list[SignedMessage]:
        """Process one coordinator message (ignored when not for this store or already seen)."""
        out: list[SignedMessage] = []
        try:
            msg = _parse(message)
        except MessageRejected as exc:
            self.side.audit("rejected", None, code=exc.code, detail=exc.detail)
            return out
        if msg.sender != self.coordinator_id or msg.recipient not in (None, self.party_id):
            return out
        if msg.round_id != self.round_id and level_of(self.round_id, msg.round_id) is None:
            return out
        if msg.message_id in self.handled or self.finished or self.status != "joined":
            return out
        try:
            if msg.round_id == self.round_id:
                self._round_message(msg, out)
            else:
                self._level_message(msg, out)
        except MessageRejected as exc:
            log.warning("store %s rejected %s: %s", self.party_id, msg.msg_type, exc)
            self.side.audit("rejected", msg, code=exc.code, detail=exc.detail)
        self.handled[msg.message_id] = ""
        return out

    def _round_message(self, msg: SignedMessage, out: list) -> None:
        if msg.msg_type == T.LEVEL_OPEN:
            verify_message(msg, self.side.registry(), round_id=self.round_id, msg_type=T.LEVEL_OPEN, phase="level",
                           sender=self.coordinator_id, recipient=None)
            self.side.audit("received", msg)
            self._open_level(msg, out)
        elif msg.msg_type == T.ROUND_END:
            verify_message(msg, self.side.registry(), round_id=self.round_id, msg_type=T.ROUND_END, phase="end",
                           sender=self.coordinator_id, recipient=None)
            self.side.audit("received", msg)
            self._end(msg)

    def _open_level(self, msg: SignedMessage, out: list) -> None:
        p = msg.payload
        level = int(p["level"])
        if level <= self.level:
            return
        if self.party_id not in p.get("clients", []):
            self.level = level          # not asked at this level (excluded earlier)
            return
        spec = p["candidates"]
        cands = C.generate(spec)
        if C.digest(cands) != p["digest"] or len(cands) != int(p["m"]):
            raise MessageRejected("invalid_payload", f"level {level}: candidate list does not match its digest",
                                  message=msg)
        plans, _ = self.plans()
        plan = plans[level - 1]
        if self._txs is None:
            self._txs = self.side.bounded_transactions(self.spec)
        t, c = int(p["threshold"]), int(p["colluders"])
        self.noisy[level] = level_vector(self._txs, cands, self.spec.noise_type, plan, mode=self.spec.mode,
                                         t_minus_c=honest_min(t, c))
        self.level = level
        if self.spec.mode == "secure":
            self.secagg = SecAggClient(self.identity, self.side.registry(), p["setup"],
                                       coordinator_id=self.coordinator_id)
            if self.secagg.config.vector_length != 3 * len(cands):
                raise MessageRejected("invalid_payload", "secagg vector length != 3 x candidates", message=msg)
            self._send(self.secagg.advertise_keys(), out)
        else:
            rid = level_round_id(self.round_id, level)
            self._send(sign(self.identity, T.LOCAL_INPUT, rid, {
                "level": level, "vector_length": int(self.noisy[level].shape[0]),
                "vector": encode_i64(self.noisy[level])}, recipient=self.coordinator_id), out)
            self.outcome.included_levels.append(level)   # sent in the clear: it counts as released
            self.noisy.pop(level, None)

    def _level_message(self, msg: SignedMessage, out: list) -> None:
        level = level_of(self.round_id, msg.round_id)
        sa = self.secagg
        if sa is None or level != self.level or sa.config.round_id != msg.round_id:
            return
        self.side.audit("received", msg)
        try:
            if msg.msg_type == MsgType.KEYS_BROADCAST:
                self._send(sa.share_keys(msg), out)
            elif msg.msg_type == MsgType.SHARES_FORWARD:
                self._send(sa.masked_input(msg, self.noisy[level]), out)
            elif msg.msg_type == MsgType.SURVIVOR_SET:
                self._send(sa.consistency_check(msg), out)
            elif msg.msg_type == MsgType.UNMASK_REQUEST:
                self._send(sa.unmask(msg), out)
            elif msg.msg_type == MsgType.ROUND_RESULT:
                if sa.handle_result(msg):
                    self.outcome.included_levels.append(level)
                self._close_level(level)
            elif msg.msg_type == MsgType.ROUND_ABORT:
                sa.handle_abort(msg)
                self._close_level(level)
        except ClientExcluded as exc:
            log.info("store %s excluded at level %s: %s", self.party_id, level, exc.reason)
            self.side.audit("excluded", msg, reason=exc.reason)
        except (RoundAborted, ProtocolError) as exc:
            self.side.audit("aborted", msg, reason=str(exc))
            self._close_level(level)

    def _close_level(self, level: int) -> None:
        self.noisy.pop(level, None)
        self.secagg = None

    def _end(self, msg: SignedMessage) -> None:
        p = msg.payload
        self.outcome.status = str(p.get("status", "failed"))
        self.outcome.reason = str(p.get("reason", ""))
        self.noisy.clear()
        self.secagg = None
        if self.outcome.charged:
            self.side.commit(self.ledger_id, self.spec, self.outcome)
        else:
            self.side.abort(self.ledger_id, self.spec, f"round {self.outcome.status} before any release of "
                                                      f"this store: {self.outcome.reason}"[:1000])
        self.status = "done"

    # -- persistence --------------------------------------------------------------------------------
    def to_state(self) -> dict:
        return {
            "kind": "store_round_client", "version": 1, "party_id": self.party_id,
            "invitation": self.invitation.to_dict(), "status": self.status, "ledger_id": self.ledger_id,
            "level": self.level, "secagg": self.secagg.to_state() if self.secagg else None,
            "noisy": {str(k): encode_i64(v) for k, v in self.noisy.items()},
            "noisy_len": {str(k): int(v.shape[0]) for k, v in self.noisy.items()},
            "handled": sorted(self.handled), "outcome": vars(self.outcome),
        }

    @classmethod
    def from_state(cls, state: Mapping, identity: PartyIdentity, side: StoreSide) -> StoreRoundClient:
        if state.get("kind") != "store_round_client" or state.get("version") != 1:
            raise ValueError("not a store round client state")
        inv = SignedMessage.from_dict(state["invitation"])
        self = cls(identity, side, inv, coordinators=(inv.sender,))
        self.status = state["status"]
        self.ledger_id = state["ledger_id"]
        self.level = int(state["level"])
        if state["secagg"]:
            self.secagg = SecAggClient.from_state(state["secagg"], identity, side.registry())
        self.noisy = {int(k): decode_i64(v, int(state["noisy_len"][k])) for k, v in state["noisy"].items()}
        self.handled = {m: "" for m in state["handled"]}
        self.outcome = Outcome(**state["outcome"])
        return self


# --------------------------------------------------------------------------------------------------
# a blocking agent (tests, benchmark, and `python -m include.federate.client`)
# --------------------------------------------------------------------------------------------------

def run_round_client(client: StoreRoundClient, transport, *, timeout: float = 600.0,
                     crash_at: str | None = None) -> Outcome:
    """Take part in one round until ``round_end`` (or ``timeout`` seconds): read the round's partition
    of the stores' topic, answer on the coordinator's. ``crash_at`` (tests: ``"<level>:<msg type>"``)
    kills this process with SIGKILL just before answering that message."""
    import os
    import signal

    from include.federate.transport import addressed_to

    topic, partition, offset = client.spec.to_stores
    ctopic, cpartition = client.spec.to_coordinator
    transport.publish_many(ctopic, client.start(), partition=cpartition, key=client.round_id)
    deadline = time.monotonic() + timeout
    with transport.reader(topic, int(partition), int(offset)) as reader:
        while not client.finished and time.monotonic() < deadline:
            for rec in reader.poll(1.0):
                if not addressed_to(rec.value, round_id=client.round_id, party_id=client.party_id):
                    continue
                if crash_at:
                    env = SignedMessage.from_json(rec.value)
                    lvl = level_of(client.round_id, env.round_id)
                    if f"{lvl}:{env.msg_type}" == crash_at:
                        log.warning("store %s: simulated crash at %s", client.party_id, crash_at)
                        os.kill(os.getpid(), signal.SIGKILL)
                answers = client.handle(rec.value)
                if answers:
                    transport.publish_many(ctopic, answers, partition=cpartition, key=client.round_id)
                if client.finished:
                    break
    flush = getattr(client.side, "flush", None)
    if callable(flush):
        flush()
    return client.outcome


def run_store_agent(identity: PartyIdentity, side: StoreSide, transport, *, rounds: int | None = None,
                    invitations_offset: int | None = None, stop_after: float | None = None,
                    crash_at: str | None = None) -> list[Outcome]:
    """Listen on the invitations topic and take part in every round this store is invited to (one at a
    time); stops after ``rounds`` rounds or ``stop_after`` seconds."""
    from include.federate.topics import INVITATIONS
    from include.federate.transport import addressed_to, peek

    outcomes: list[Outcome] = []
    start = invitations_offset if invitations_offset is not None else transport.end_offset(INVITATIONS, 0)
    t0 = time.monotonic()
    with transport.reader(INVITATIONS, 0, start) as inv:
        while (rounds is None or len(outcomes) < rounds) and (stop_after is None or time.monotonic() - t0 < stop_after):
            for rec in inv.poll(1.0):
                env = peek(rec.value)
                if env is None or env["type"] != T.INVITATION or not addressed_to(
                        rec.value, round_id=str(env["round_id"]), party_id=identity.party_id):
                    continue
                try:
                    client = StoreRoundClient(identity, side, rec.value)
                except (MessageRejected, ValueError) as exc:
                    side.audit("rejected", None, code=getattr(exc, "code", "invalid"), detail=str(exc))
                    continue
                outcomes.append(run_round_client(client, transport, crash_at=crash_at))
    return outcomes
