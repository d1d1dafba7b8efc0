"""Coordinator of a federated round: secure aggregation of the stores' noisy pattern vectors over Kafka."""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task
from airflow.sdk import TriggerRule

from _shared.assets import GLOBAL_PATTERNS
from _shared.defaults import DEFAULT_ARGS

DOC = """
### federated_round
A regional coordinator triggers it (schedule: none). It invites the stores over Kafka
(`platform.federate.invitations`: each store's `federated_client` DAG wakes up on it), then runs the
level-wise rounds of the protocol (items, pairs of kept items, triples) with **secure aggregation after
Bonawitz et al.** (`mode=secure`: each store adds a discrete Gaussian/Laplace *noise share*, the
coordinator only sees the masked sum) or with full local noise (`mode=local`). Dropouts after key
sharing are tolerated down to `dropout_threshold` (t) stores; below it the round fails, nothing is
released and no budget is charged for the unreleased levels.

Writes `federated_rounds` (status, params, error_message, levels, cost), `round_participations`,
`global_patterns` (one version per round; view `global_patterns_latest`), the message trace in
`activity_logs`; publishes the result on `platform.federate.results`. Redis holds the live progress
(`platform:federate:round:<id>`) and the one-round-per-region lock. See `docs/federate.md`.

A failure for a clear reason (too few clients, budget cap, region busy, protocol abort) is recorded
in `federated_rounds.error_message` and fails the run without retries.
"""

_ONE_OF_TIMES = {"type": ["null", "string"], "format": "date-time"}


@dag(
    dag_id="federated_round",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    tags=["platform", "federate", "privacy"],
    doc_md=DOC,
    params={
        "store_ids": Param([], type="array", items={"type": "string", "format": "uuid"},
                           description="Stores to invite (UUIDs). Empty: every active store with a privacy config."),
        "min_clients_required": Param(None, type=["null", "integer"], minimum=2,
                                      description="Fewest stores that must join. Empty: server_configs."
                                                  "min_clients_per_round (2 when that is 0)."),
        "mode": Param("secure", type="string", enum=["secure", "local"],
                      description="secure: distributed DP with secure aggregation; local: every store adds "
                                  "full noise and sends its noisy vector unmasked."),
        "epsilon": Param(1.0, type="number", exclusiveMinimum=0, maximum=100,
                         description="ε of the whole round per transaction (bounded by the global budget and "
                                     "by every store's ledger)."),
        "delta": Param(1e-6, type="number", exclusiveMinimum=0, exclusiveMaximum=0.01,
                       description="δ of the round's (ε, δ) guarantee."),
        "proposal_epsilon": Param(0, type="number", minimum=0, maximum=10,
                                  description="> 0: every store also proposes candidates (its itemsets whose noisy "
                                              "utility clears OpenDP's threshold) with this extra ε; they join the "
                                              "level-wise domain. 0: the public domain only."),
        "noise_type": Param("gaussian", type="string", enum=["gaussian", "laplace"],
                            description="Discrete Gaussian (zCDP, recommended) or discrete Laplace (pure ε)."),
        "min_utility": Param(None, type=["null", "number"], minimum=0,
                             description="Release patterns whose noisy utility (currency units) is at least this."),
        "min_utility_ratio": Param(None, type=["null", "number"], minimum=0, maximum=1,
                                   description="Or: threshold as a share of the noisy total utility."),
        "max_pattern_length": Param(3, type="integer", minimum=1, maximum=3,
                                    description="Largest itemset size (levels of the candidate domain, ≤ 3)."),
        "top_k": Param(100, type=["null", "integer"], minimum=1,
                       description="Release at most this many patterns (best noisy utility first)."),
        "window_start": Param(None, **_ONE_OF_TIMES,
                              description="Transactions from this time (ISO 8601). Empty: from the beginning."),
        "window_end": Param(None, **_ONE_OF_TIMES,
                            description="Transactions before this time (ISO 8601). Empty: the run's start."),
        "phase_timeout_minutes": Param(5, type="number", minimum=0.05, maximum=120,
                                       description="How long each protocol phase waits for the stores."),
        "dropout_threshold": Param(None, type=["null", "integer"], minimum=2,
                                   description="t: fewest stores that must survive every phase. Empty: ⌈2n/3⌉."),
    },
)
def federated_round():
    @task
    def open_round(params=None, dag_run=None) -> dict:
        from airflow.exceptions import AirflowFailException

        from _shared.db import platform_dsn
        from _shared.federate import kafka_settings, redis_settings
        from include.federate.service import RoundFailedCleanly
        from include.federate.service import open_round as open_

        try:
            return open_(platform_dsn(), dict(params), kafka=kafka_settings(), redis=redis_settings(),
                         dag_run_id=dag_run.run_id)
        except RoundFailedCleanly as exc:
            raise AirflowFailException(str(exc)) from None

    @task(outlets=[GLOBAL_PATTERNS])
    def run_round(opened: dict, ti=None, outlet_events=None) -> dict:
        from airflow.exceptions import AirflowFailException

        from _shared.db import platform_dsn
        from _shared.federate import kafka_settings, redis_settings
        from include.federate.service import RoundFailedCleanly
        from include.federate.service import run_round as run_

        try:
            out = run_(platform_dsn(), opened, kafka=kafka_settings(), redis=redis_settings(),
                       try_number=ti.try_number)
        except RoundFailedCleanly as exc:
            raise AirflowFailException(str(exc)) from None
        print(out.get("top_patterns", ""))
        outlet_events[GLOBAL_PATTERNS].extra = {"round_id": out["round_id"], "round_number": out.get("round_number"),
                                                "patterns": out.get("patterns")}
        return out

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def finalize(opened: dict | None = None, dag_run=None) -> dict:
        from _shared.db import platform_dsn
        from _shared.federate import redis_settings
        from include.federate.service import finalize as fin

        return fin(platform_dsn(), opened, redis=redis_settings(), dag_run_id=dag_run.run_id)

    opened = open_round()
    done = run_round(opened)
    done >> finalize(opened)


federated_round()
