"""A store's side of the federated rounds: started by the round's invitation on Kafka."""
from __future__ import annotations

import os

import pendulum
from airflow.providers.apache.kafka.triggers.msg_queue import KafkaMessageQueueTrigger
from airflow.sdk import Asset, AssetWatcher, dag, task

from _shared.defaults import DEFAULT_ARGS
from _shared.federate import StoreClientOperator

DOC = """
### federated_client
Event-driven: an `AssetWatcher` on the Kafka topic `platform.federate.invitations` (apply function
`include.federate.watch.accept_invitation`) fires for every invitation to a store of this
deployment (`FEDERATE_LOCAL_STORES` restricts which; unset: all stores). Invitations that arrive
together land in one run; the tasks are mapped so each (store, round) is handled on its own.

1. `invitations`: the invitations of the triggering asset events (or, in a manual run, the conf's
   `invitations`: a list of signed invitation texts, e.g. to replay one).
2. `join` (mapped): verify the coordinator's signature, recompute the round's OpenDP plan, **reserve
   its cost in the store's privacy ledger** (refused: answer `decline`, draw no noise), answer `join`.
3. `take_part` (mapped, deferrable): for each coordinator message (level candidates, the secure
   aggregation phases, the round end) compute and send the answer, then **defer** on a Kafka trigger
   until the next message: no worker slot is held while waiting. The state between deferrals
   (including the round's secret keys) is kept encrypted at the store (`federate_client_states`) and
   deleted at the end. At `round_end` the reservation is charged if the store's input was in an
   unmasked sum, released otherwise.
4. `report`: one line per store and round.

Create the Kafka topics before unpausing (`python -m include.federate.topics`, or any coordinator
run). See `docs/federate.md`.
"""

# seconds take_part keeps reading after a message before it defers (env, for tests: 0 = defer at once)
DRAIN_SECONDS = float(os.environ.get("FEDERATE_CLIENT_DRAIN_SECONDS", "0.5"))

INVITATIONS_ASSET = Asset(
    name="federate_invitations",
    uri="kafka://platform/platform.federate.invitations",
    watchers=[AssetWatcher(
        name="federate_invitation_watcher",
        trigger=KafkaMessageQueueTrigger(topics=["platform.federate.invitations"],
                                         apply_function="include.federate.watch.accept_invitation",
                                         # the provider sleeps poll_interval after every record that
                                         # is not for this deployment: keep it short
                                         kafka_config_id="platform_kafka", poll_interval=0.05),
    )],
)


@dag(
    dag_id="federated_client",
    schedule=[INVITATIONS_ASSET],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=16,
    default_args=DEFAULT_ARGS,
    tags=["platform", "federate", "store"],
    doc_md=DOC,
)
def federated_client():
    @task
    def invitations(triggering_asset_events=None, dag_run=None) -> list[str]:
        # asset events of the watcher; a manual run may pass {"invitations": ["<signed invitation>", ...]}
        out = [str(x) for x in ((dag_run.conf or {}).get("invitations") or [])] if dag_run else []
        for events in (triggering_asset_events or {}).values():
            for ev in events:
                payload = (ev.extra or {}).get("payload") or {}
                if isinstance(payload, dict) and payload.get("invitation"):
                    out.append(payload["invitation"])
        return out

    @task
    def join(invitation: str) -> dict:
        from _shared.db import platform_dsn
        from _shared.federate import chain_key, kafka_settings
        from include.federate.service import join_round

        return join_round(platform_dsn(), invitation, kafka=kafka_settings(), hash_key=chain_key())

    @task
    def report(outcomes: list) -> list:
        for o in outcomes:
            print(o)
        return list(outcomes)

    joined = join.expand(invitation=invitations())
    parts = StoreClientOperator.partial(task_id="take_part", drain_seconds=DRAIN_SECONDS).expand(joined=joined)
    report(parts.output)


federated_client()
