"""Fixtures of the federated-round tests: identities, registries, round configurations, inputs.

Everything here is in process (secure aggregation is pure protocol logic); the Kafka transport has
its own integration tests.
"""
from __future__ import annotations

import secrets

import numpy as np
import pytest

from include.federate.driver import make_parties
from include.federate.keys import KeyRegistry
from include.federate.secagg import RoundConfig


class Parties:
    """A coordinator, n stores and the registry of their public keys."""

    def __init__(self, n: int) -> None:
        self.server, self.stores = make_parties(n)
        self.registry = KeyRegistry.of([self.server, *self.stores.values()])

    def config(self, length: int = 64, **kw) -> RoundConfig:
        kw.setdefault("input_bound", 2**40)
        return RoundConfig(round_id=f"test-{secrets.token_hex(6)}", server_id=self.server.party_id,
                           clients=tuple(self.stores), vector_length=length, **kw)


@pytest.fixture
def parties():
    """``parties(n)`` -> :class:`Parties` with fresh keys."""
    return Parties


def _make_inputs(config: RoundConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic test vectors spanning [-bound, bound] (no randomness in product code is involved:
    these are the *test's* data, drawn from a seeded generator)."""
    rng = np.random.default_rng(seed)
    b = config.input_bound
    out = {}
    for p in config.clients:
        v = rng.integers(-b, b, size=config.vector_length, endpoint=True, dtype=np.int64)
        v[0] = b  # extremes are included
        v[-1] = -b
        out[p] = v
    return out


@pytest.fixture
def make_inputs():
    """``make_inputs(config, seed=0)`` -> one int64 vector per client of ``config``."""
    return _make_inputs
