"""The database-backed :class:`~include.federate.client.StoreSide`: a store's window of transactions
(bounded as :mod:`include.privacy.bounding` does), its budget ledger (:mod:`include.privacy.ledger`:
reserve before any noise, charge or release at the end), the key registry and the audit trail."""
from __future__ import annotations

import logging

import psycopg

from include.federate.identities import load_registry
from include.federate.protocol import Outcome, RoundSpec
from include.federate.records import ActivityAudit

log = logging.getLogger(__name__)
RELEASE_NAME = "federated_round"


class DbStoreSide:
    """``hash_key``: the chain key (hex or bytes) for rounds over keyed ids; default: connection
    ``platform_privacy_hmac`` from the environment. Only used in memory, never logged or sent."""

    def __init__(self, dsn: str, store_id: str, round_id: str, *, hash_key=None) -> None:
        self.dsn, self.store_id, self.round_id = dsn, str(store_id), str(round_id)
        self.audit = ActivityAudit(dsn, round_id, store_id=self.store_id, actor=f"store:{store_id}")
        self._registry = None
        self._hash_key = hash_key

    def hash_key(self, spec: RoundSpec):
        """The key of a round over keyed ids; raises HashKeyError (the store declines) when this store has
        no key or another key than the round's (fingerprints differ)."""
        from include.privacy.hashing import HMAC_CONN_ID, HashKey, HashKeyError

        if self._hash_key is None:
            from include.connections import get_connection

            try:
                self._hash_key = get_connection(HMAC_CONN_ID).password or None
            except Exception:  # noqa: BLE001 - no such connection: reported below
                self._hash_key = None
        if self._hash_key is None:
            raise HashKeyError(f"round {spec.round_id} runs on keyed item ids but this store has no chain key "
                               f"(connection '{HMAC_CONN_ID}')")
        key = HashKey(self._hash_key)
        if key.fingerprint != spec.key_fingerprint:
            raise HashKeyError(f"round {spec.round_id} uses the chain key {spec.key_fingerprint}, this store "
                               f"holds key {key.fingerprint}")
        return key

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, application_name="federated_client")

    def registry(self):
        if self._registry is None:
            with self.connect() as c:
                self._registry = load_registry(c)
        return self._registry

    def refresh(self) -> None:
        self._registry = None

    def bounded_transactions(self, spec: RoundSpec) -> list:
        from include.privacy.bounding import Bounds, bound_transactions
        from include.privacy.store_data import iter_transactions

        start, end = spec.window
        bounds = Bounds(int(spec.max_items), int(spec.utility_cap), int(spec.utility_scale))
        with self.connect() as c:
            txs = bound_transactions(iter_transactions(c, self.store_id, start, end), bounds)
        if spec.key_fingerprint:
            from include.privacy.hashing import hash_bounded

            return hash_bounded(txs, self.hash_key(spec))
        return txs

    def reserve(self, spec: RoundSpec, cost) -> str:
        from include.privacy import ledger as L
        from include.privacy.settings import load_platform_settings, load_privacy_config

        if spec.key_fingerprint:
            self.hash_key(spec)         # no key, or another key: decline before anything is reserved
        start, end = spec.window
        with self.connect() as c:
            with c.transaction():
                platform = load_platform_settings(c)
                cfg = load_privacy_config(c, self.store_id)
            entry = L.reserve(c, store_id=self.store_id, window_start=start, window_end=end, cost=cost,
                              mechanism="discrete_laplace" if spec.noise_type == "laplace" else "discrete_gaussian",
                              budget=cfg.budget(platform), round_id=spec.round_id, release_name=RELEASE_NAME,
                              mode="distributed" if spec.mode == "secure" else "local",
                              details={"round_number": spec.round_number, "mode": spec.mode, "epsilon": spec.epsilon,
                                       "delta": spec.delta, "levels": spec.max_pattern_length,
                                       "bounds": [spec.max_items, spec.utility_cap, spec.utility_scale]},
                              store_label=f"store {self.store_id}")
        return str(entry.id)

    def commit(self, ledger_id, spec: RoundSpec, outcome: Outcome) -> None:
        from include.privacy import ledger as L

        with self.connect() as c:
            row = c.execute("SELECT status FROM privacy_budget_ledger WHERE id = %s", (ledger_id,)).fetchone()
            if row and row[0] == "reserved":
                L.commit_charge(c, ledger_id, {"round_id": spec.round_id, "included_levels": outcome.included_levels,
                                               "status": outcome.status})

    def abort(self, ledger_id, spec: RoundSpec, reason: str) -> None:
        from include.privacy import ledger as L

        if ledger_id:
            with self.connect() as c:
                L.abort_charge(c, ledger_id, reason)

    def flush(self) -> None:
        try:
            self.audit.flush()
        except Exception:  # noqa: BLE001 - the trace must not break the protocol; it is retried next flush
            log.exception("could not write the audit trail")
