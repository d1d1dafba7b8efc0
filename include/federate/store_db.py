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
    def __init__(self, dsn: str, store_id: str, round_id: str) -> None:
        self.dsn, self.store_id, self.round_id = dsn, str(store_id), str(round_id)
        self.audit = ActivityAudit(dsn, round_id, store_id=self.store_id, actor=f"store:{store_id}")
        self._registry = None

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
            return bound_transactions(iter_transactions(c, self.store_id, start, end), bounds)

    def reserve(self, spec: RoundSpec, cost) -> str:
        from include.privacy import ledger as L
        from include.privacy.settings import load_platform_settings, load_privacy_config

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
