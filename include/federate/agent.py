"""A store agent outside Airflow: ``python -m include.federate.agent --store-id ID [...]``.

It listens on the invitations topic and takes part in the rounds its store is invited to, with the
same client state machine, database side (window, ledger, keys, audit) and Kafka topics as the
``federated_client`` DAG, but blocking in one process instead of deferring between messages. Used by
the integration tests (several stores at once, one of them killed mid-round) and handy for a store
that runs no Airflow.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m include.federate.agent")
    ap.add_argument("--store-id", required=True)
    ap.add_argument("--dsn", help="platform database (default: connection platform_postgres)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--invitations-offset", type=int, help="read invitations from this offset (default: the end)")
    ap.add_argument("--stop-after", type=float, default=600.0, help="seconds")
    ap.add_argument("--crash-at", help="tests: SIGKILL this process before answering '<level>:<message type>'")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s agent %(levelname)s %(message)s")

    from include.connections import KAFKA, KAFKA_PRODUCER, get_connection, postgres_dsn
    from include.federate.client import run_store_agent
    from include.federate.identities import ensure_identity
    from include.federate.protocol import store_party
    from include.federate.store_db import DbStoreSide
    from include.federate.transport import KafkaTransport

    dsn = args.dsn or postgres_dsn()
    side = DbStoreSide(dsn, args.store_id, "00000000-0000-0000-0000-000000000000")
    with side.connect() as c:
        identity = ensure_identity(c, store_party(args.store_id), role="store", store_id=args.store_id)
    transport = KafkaTransport(get_connection(KAFKA).extra, get_connection(KAFKA_PRODUCER).extra)

    outcomes = []
    offset = args.invitations_offset
    print(json.dumps({"ready": args.store_id}), flush=True)
    while len(outcomes) < args.rounds:
        got = run_store_agent(identity, _PerRoundSide(dsn, args.store_id), transport, rounds=1,
                              invitations_offset=offset, stop_after=args.stop_after, crash_at=args.crash_at)
        if not got:
            break
        outcomes.extend(got)
        offset = None
    print(json.dumps([vars(o) for o in outcomes]), flush=True)
    return 0


class _PerRoundSide:
    """A DbStoreSide whose round id (for the audit trail) is taken from the invitation it serves."""

    def __init__(self, dsn: str, store_id: str) -> None:
        from include.federate.store_db import DbStoreSide

        self._dsn, self.store_id = dsn, store_id
        self._side = DbStoreSide(dsn, store_id, "00000000-0000-0000-0000-000000000000")

    def _for(self, spec) -> None:
        from include.federate.store_db import DbStoreSide

        if self._side.round_id != spec.round_id:
            self._side.flush()
            self._side = DbStoreSide(self._dsn, self.store_id, spec.round_id)

    def registry(self):
        self._side.refresh()
        return self._side.registry()

    def bounded_transactions(self, spec):
        self._for(spec)
        return self._side.bounded_transactions(spec)

    def reserve(self, spec, cost):
        self._for(spec)
        return self._side.reserve(spec, cost)

    def commit(self, ledger_id, spec, outcome):
        self._side.commit(ledger_id, spec, outcome)

    def abort(self, ledger_id, spec, reason):
        self._side.abort(ledger_id, spec, reason)

    def audit(self, direction, msg, **extra):
        if msg is not None and self._side.round_id.startswith("00000000") and "/" not in msg.round_id:
            self._side = type(self._side)(self._dsn, self.store_id, msg.round_id)
        self._side.audit(direction, msg, **extra)

    def flush(self):
        self._side.flush()


if __name__ == "__main__":
    sys.exit(main())
