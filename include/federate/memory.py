"""In-memory store side and coordinator hooks: the benchmark and protocol tests run the real client
and coordinator over the real Kafka broker without a database (data in memory, ledger in memory)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from include.federate.keys import KeyRegistry
from include.federate.messages import SignedMessage
from include.federate.protocol import Outcome, RoundSpec


@dataclass
class MemoryLedger:
    """A per-store budget as :mod:`include.privacy.budget` computes it, without the table."""

    epsilon: float
    noise_type: str = "gaussian"
    delta: float = 1e-6
    charges: list = field(default_factory=list)

    def reserve(self, spec: RoundSpec, cost) -> str:
        from include.privacy.budget import Budget, BudgetExceeded, Charge, check

        start, end = spec.window
        new = Charge(start, end, cost, "reserved", spec.round_id)
        d = check(self.charges, new, Budget(self.epsilon, self.noise_type, self.delta), "store")
        if not d.allowed:
            raise BudgetExceeded(d.message)
        self.charges.append(new)
        return spec.round_id

    def settle(self, ledger_id: str, charged: bool) -> None:
        from dataclasses import replace

        self.charges = [replace(c, status="charged" if charged else "aborted") if c.label == ledger_id else c
                        for c in self.charges]


class MemoryStoreSide:
    def __init__(self, store_id: str, registry: KeyRegistry, bounded_transactions: list, ledger: MemoryLedger):
        self.store_id = store_id
        self._registry = registry
        self._txs = bounded_transactions
        self.ledger = ledger
        self.outcomes: list[Outcome] = []
        self.audit_log: list[tuple] = []

    def registry(self) -> KeyRegistry:
        return self._registry

    def bounded_transactions(self, spec: RoundSpec) -> list:
        return self._txs

    def reserve(self, spec, cost):
        return self.ledger.reserve(spec, cost)

    def commit(self, ledger_id, spec, outcome):
        self.ledger.settle(ledger_id, True)
        self.outcomes.append(outcome)

    def abort(self, ledger_id, spec, reason):
        self.ledger.settle(ledger_id, False)

    def audit(self, direction: str, msg: SignedMessage | None, **extra) -> None:
        self.audit_log.append((direction, msg.msg_type if msg else None, extra.get("code")))


class MemoryHooks:
    def __init__(self, registry: KeyRegistry):
        self._registry = registry
        self.audit_log: list[tuple] = []
        self.progress_log: list[dict] = []
        self._lock = threading.Lock()

    def registry(self) -> KeyRegistry:
        return self._registry

    def audit(self, direction, msg, **extra):
        with self._lock:
            self.audit_log.append((direction, msg.msg_type if msg else None, extra.get("code")))

    def progress(self, **fields):
        self.progress_log.append(fields)
