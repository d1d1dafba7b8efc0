"""Airflow side of the federated rounds: connection settings, the Kafka trigger a store's client task
defers on, and that deferrable operator. The protocol itself is in ``include/federate``.

The trigger must be importable by the triggerer: its classpath is ``dags._shared.federate...``, which
needs the project root on the triggerer's ``PYTHONPATH`` (``.local/env.sh`` and the compose image set
it: the checkout resp. ``/opt/airflow``).
"""
from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

KAFKA_CONN = "platform_kafka"
KAFKA_PRODUCER_CONN = "platform_kafka_producer"
REDIS_CONN = "platform_redis"
TRIGGER_CLASSPATH = "dags._shared.federate.RoundMessageTrigger"


def kafka_settings() -> tuple[dict, dict]:
    """librdkafka settings (consumer, producer) from the Airflow connections."""
    from airflow.sdk import BaseHook

    return (dict(BaseHook.get_connection(KAFKA_CONN).extra_dejson),
            dict(BaseHook.get_connection(KAFKA_PRODUCER_CONN).extra_dejson))


def redis_settings() -> dict:
    from airflow.sdk import BaseHook

    from include.connections import redis_ssl_kwargs

    c = BaseHook.get_connection(REDIS_CONN)
    x = c.extra_dejson or {}
    return {"host": c.host, "port": c.port, "password": c.password, "db": x.get("db", 0), **redis_ssl_kwargs(x)}


def chain_key() -> str | None:
    """The chain key for rounds over keyed item ids (connection platform_privacy_hmac, secrets backend
    included); None when this deployment has none. Kept in memory only."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection("platform_privacy_hmac").password or None
    except Exception:  # noqa: BLE001 - no such connection: a hashed round is then declined with the reason
        return None


class RoundMessageTrigger(BaseTrigger):
    """Fires when a message of ``round_id`` for ``party_id`` (or a broadcast) appears in
    ``topic``/``partition`` at or after ``offset``; fires ``timeout`` after ``timeout_seconds``."""

    def __init__(self, topic: str, partition: int, offset: int, round_id: str, party_id: str,
                 timeout_seconds: float = 600.0, kafka_conn_id: str = KAFKA_CONN) -> None:
        super().__init__()
        self.topic, self.partition, self.offset = topic, int(partition), int(offset)
        self.round_id, self.party_id = round_id, party_id
        self.timeout_seconds, self.kafka_conn_id = float(timeout_seconds), kafka_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return TRIGGER_CLASSPATH, {"topic": self.topic, "partition": self.partition, "offset": self.offset,
                                   "round_id": self.round_id, "party_id": self.party_id,
                                   "timeout_seconds": self.timeout_seconds, "kafka_conn_id": self.kafka_conn_id}

    async def run(self):
        from asgiref.sync import sync_to_async

        from include.federate.transport import PartitionReader, addressed_to

        def settings():
            from airflow.sdk import BaseHook

            return dict(BaseHook.get_connection(self.kafka_conn_id).extra_dejson)

        config = await sync_to_async(settings)()
        reader = await asyncio.to_thread(PartitionReader, config, self.topic, self.partition, self.offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_seconds
        try:
            while loop.time() < deadline:
                for rec in await asyncio.to_thread(reader.poll, 1.0):
                    if addressed_to(rec.value, round_id=self.round_id, party_id=self.party_id):
                        yield TriggerEvent({"status": "message", "offset": rec.offset})
                        return
            yield TriggerEvent({"status": "timeout", "offset": reader.position})
        finally:
            await asyncio.to_thread(reader.close)


class StoreClientOperator(BaseOperator):
    """One store's part in one round, deferring between the coordinator's messages (no worker slot
    is held while waiting). ``joined`` is the output of the join task: store, round, position."""

    template_fields = ("joined",)

    def __init__(self, *, joined: dict, message_timeout_seconds: float = 1800.0, drain_seconds: float = 0.5,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.joined = joined
        self.message_timeout_seconds = message_timeout_seconds
        # how long to keep reading after the last message before deferring: a coordinator that answers
        # within it saves a deferral round trip; longer waits never hold the worker slot
        self.drain_seconds = drain_seconds

    def execute(self, context):
        return self._step(None)

    def resume(self, context, event: dict | None = None):
        return self._step(event or {})

    def _step(self, event: dict | None):
        from _shared.db import platform_dsn
        from include.federate.client import StoreRoundClient
        from include.federate.identities import (delete_client_state, ensure_identity, load_client_state,
                                                 save_client_state)
        from include.federate.protocol import store_party
        from include.federate.store_db import DbStoreSide
        from include.federate.transport import KafkaTransport, addressed_to

        j = self.joined
        if not j or not j.get("joined"):
            self.log.info("store did not join: %s", (j or {}).get("reason"))
            return {"store_id": (j or {}).get("store_id"), "status": "declined", "reason": (j or {}).get("reason")}
        dsn, store_id, round_id = platform_dsn(), j["store_id"], j["round_id"]
        side = DbStoreSide(dsn, store_id, round_id, hash_key=chain_key())
        with side.connect() as c:
            identity = ensure_identity(c, store_party(store_id), role="store", store_id=store_id)
            saved = load_client_state(c, store_id, round_id)
        if saved is None:
            self.log.info("no client state for store %s round %s: already finished", store_id, round_id)
            return {"store_id": store_id, "round_id": round_id, "status": "finished"}
        client = StoreRoundClient.from_state(saved["client"], identity, side)
        topic, partition, _ = client.spec.to_stores
        ctopic, cpartition = client.spec.to_coordinator
        if event and event.get("status") == "timeout":
            side.audit("timeout", None, detail=f"no coordinator message for {self.message_timeout_seconds}s")
        cons, prod = kafka_settings()
        transport = KafkaTransport(cons, prod)
        # after the trigger saw a message, wait for the fresh consumer to fetch it; then only drain
        first_wait = 15.0 if (event or {}).get("status") == "message" else max(self.drain_seconds, 0.2)
        with transport.reader(topic, int(partition), int(saved["position"])) as reader:
            wait = first_wait
            while True:
                records = reader.poll(wait)
                wait = self.drain_seconds
                if not records:
                    break
                for rec in records:
                    if addressed_to(rec.value, round_id=round_id, party_id=client.party_id):
                        answers = client.handle(rec.value)
                        if answers:
                            transport.publish_many(ctopic, answers, partition=int(cpartition), key=round_id)
                    if client.finished:
                        break
                if client.finished:
                    break
            position = reader.position
        side.flush()
        with side.connect() as c:
            if client.finished:
                delete_client_state(c, store_id, round_id)
            else:
                save_client_state(c, store_id, round_id, {"client": client.to_state(), "position": position})
        if client.finished:
            o = client.outcome
            self.log.info("store %s round %s: %s (levels included %s) %s", store_id, round_id, o.status,
                          o.included_levels, o.reason)
            return {"store_id": store_id, "round_id": round_id, "status": o.status, "reason": o.reason,
                    "included_levels": o.included_levels}
        if event and event.get("status") == "timeout":
            raise TimeoutError(f"store {store_id}: the coordinator of round {round_id} went silent")
        self.defer(trigger=RoundMessageTrigger(topic, int(partition), position, round_id, client.party_id,
                                               timeout_seconds=self.message_timeout_seconds),
                   method_name="resume", timeout=timedelta(seconds=self.message_timeout_seconds + 60))
