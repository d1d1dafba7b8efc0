"""In-process driver of one secure aggregation: the reference for the Kafka/Airflow transport.

:func:`run_local_round` plays the coordinator and every store in one process, passing each
message through its JSON wire form (as Kafka would), with optional dropouts at any phase. It is used
by the tests and by ``python -m include.federate.driver`` to time a round without a broker.
"""
from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from include.federate.keys import KeyRegistry, PartyIdentity
from include.federate.messages import SignedMessage
from include.federate.secagg import (
    AggregationResult,
    Phase,
    RoundAborted,
    RoundConfig,
    SecAggClient,
    SecAggServer,
)

#: phases at which a client can drop (it sends nothing from that phase on)
DROP_PHASES = (Phase.ADVERTISE_KEYS, Phase.SHARE_KEYS, Phase.MASKED_INPUT, Phase.CONSISTENCY_CHECK, Phase.UNMASKING)


@dataclass
class LocalRun:
    """What happened: the result (None when aborted), the parties, and every message on the wire."""

    server: SecAggServer
    clients: dict[str, SecAggClient]
    result: AggregationResult | None
    aborted: RoundAborted | None
    wire: list[str] = field(default_factory=list)
    #: per store still listening at the end: is its input in the sum (charge the budget)?
    included: dict[str, bool] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _wire(run: LocalRun, msg: SignedMessage) -> str:
    text = msg.to_json()
    run.wire.append(text)
    return text


def run_local_round(
    config: RoundConfig,
    server_identity: PartyIdentity,
    client_identities: Mapping[str, PartyIdentity],
    inputs: Mapping[str, Any],
    *,
    dropouts: Mapping[str, str] | None = None,
    registry: KeyRegistry | None = None,
) -> LocalRun:
    """Run one aggregation; ``dropouts[party] = phase`` makes that store silent from ``phase`` on.

    Returns a :class:`LocalRun`; an abort (fewer than t left) is reported in ``run.aborted``.
    """
    dropouts = dict(dropouts or {})
    for party, phase in dropouts.items():
        if phase not in DROP_PHASES:
            raise ValueError(f"dropouts[{party!r}]: unknown phase {phase!r} (one of {DROP_PHASES})")
    if registry is None:
        registry = KeyRegistry.of([server_identity, *client_identities.values()])
    server = SecAggServer(config, server_identity, registry)
    run = LocalRun(server=server, clients={}, result=None, aborted=None)
    setup = _wire(run, server.round_setup())
    clients = {p: SecAggClient(client_identities[p], registry, setup, coordinator_id=config.server_id)
               for p in config.clients}
    run.clients = clients

    def active(phase: str) -> list[str]:
        order = DROP_PHASES.index(phase)
        return [p for p in sorted(clients) if p not in dropouts or DROP_PHASES.index(dropouts[p]) > order]

    def timed(name: str, t0: float) -> None:
        run.seconds[name] = run.seconds.get(name, 0.0) + time.perf_counter() - t0

    try:
        t0 = time.perf_counter()
        for p in active(Phase.ADVERTISE_KEYS):
            server.receive(_wire(run, clients[p].advertise_keys()))
        keys = _wire(run, server.close_advertise_keys())
        timed(Phase.ADVERTISE_KEYS, t0)

        t0 = time.perf_counter()
        for p in active(Phase.SHARE_KEYS):
            server.receive(_wire(run, clients[p].share_keys(keys)))
        forwards = {v: _wire(run, m) for v, m in server.close_share_keys().items()}
        timed(Phase.SHARE_KEYS, t0)

        t0 = time.perf_counter()
        for p in active(Phase.MASKED_INPUT):
            if p in forwards:
                server.receive(_wire(run, clients[p].masked_input(forwards[p], inputs[p])))
        survivors = _wire(run, server.close_masked_input())
        timed(Phase.MASKED_INPUT, t0)

        t0 = time.perf_counter()
        for p in active(Phase.CONSISTENCY_CHECK):
            if p in server.u3:
                server.receive(_wire(run, clients[p].consistency_check(survivors)))
        request = _wire(run, server.close_consistency_check())
        timed(Phase.CONSISTENCY_CHECK, t0)

        t0 = time.perf_counter()
        for p in active(Phase.UNMASKING):
            if p in server.u4:
                server.receive(_wire(run, clients[p].unmask(request)))
        run.result = server.close_unmasking()
        result = _wire(run, server.result_message())
        run.included = {p: clients[p].handle_result(result) for p in active(Phase.UNMASKING)}
        timed(Phase.UNMASKING, t0)
    except RoundAborted as exc:
        run.aborted = exc
        abort = _wire(run, server.abort_message())
        for c in clients.values():
            c.handle_abort(abort)
    return run


def make_parties(n: int, *, prefix: str = "store") -> tuple[PartyIdentity, dict[str, PartyIdentity]]:
    """A coordinator and ``n`` store identities with fresh Ed25519 keys (tests, benchmarks)."""
    server = PartyIdentity.generate("coordinator:local")
    stores = {f"{prefix}:{i:03d}": PartyIdentity.generate(f"{prefix}:{i:03d}") for i in range(n)}
    return server, stores


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Time secure aggregation rounds in process (no Kafka).")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--length", type=int, default=5000)
    ap.add_argument("--dropouts", type=int, default=0, help="clients dropping after share_keys")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prg", default="aes-ctr", choices=["aes-ctr", "shake-256"])
    args = ap.parse_args(argv)
    server, stores = make_parties(args.clients)
    bound = 2**40
    for r in range(args.rounds):
        config = RoundConfig(round_id=f"bench-{secrets.token_hex(4)}", server_id=server.party_id,
                             clients=tuple(stores), vector_length=args.length, input_bound=bound, prg=args.prg)
        # inputs are not random data of interest, only their sum: a fixed pattern suffices
        inputs = {p: (np.arange(args.length, dtype=np.int64) * (i + 1)) % bound for i, p in enumerate(config.clients)}
        drops = {p: Phase.MASKED_INPUT for p in config.clients[: args.dropouts]}
        t0 = time.perf_counter()
        run = run_local_round(config, server, stores, inputs, dropouts=drops)
        elapsed = time.perf_counter() - t0
        if run.result is None:
            print(f"round {r}: aborted: {run.aborted}")
            return 1
        expected = sum(inputs[p] for p in run.result.survivors)
        ok = bool(np.array_equal(run.result.total, expected))
        wire_mb = sum(len(w) for w in run.wire) / 1e6
        phases = " ".join(f"{k}={v:.2f}s" for k, v in run.seconds.items())
        print(f"round {r}: n={args.clients} m={args.length} dropouts={args.dropouts} prg={args.prg} "
              f"seconds={elapsed:.2f} exact={ok} wire={wire_mb:.1f}MB [{phases}]")
        if not ok:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
