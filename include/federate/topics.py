"""Kafka topics of the federated rounds: names, partitioning, creation (confluent-kafka AdminClient).

| topic | direction | key | partitions | content |
|---|---|---|---|---|
| ``platform.federate.invitations`` | coordinator → stores | store party id | 1 | one signed ``invitation`` per invited store; the ``federated_client`` DAG's AssetWatcher listens here |
| ``platform.federate.to_stores`` | coordinator → stores | round id | 3 | ``level_open``, the secure-aggregation broadcasts and per-store messages, ``round_end`` |
| ``platform.federate.to_coordinator`` | stores → coordinator | round id | 3 | ``join``/``decline``, the stores' secure-aggregation answers, ``local_input`` |
| ``platform.federate.results`` | coordinator → anyone | round id | 1 | ``round_results``: the released global patterns of a completed round |

Every message of one round goes to one partition (``partition_for``), so each party reads the
round's messages in order; readers *assign* that partition from a known offset (no consumer group),
so many stores in one deployment each see every message. The broker runs with
``auto.create.topics.enable=false``: :func:`ensure_topics` creates the topics (idempotent). The two
protocol topics allow messages up to :data:`MAX_MESSAGE_BYTES` (a masked vector is ~10.7 bytes per
entry).
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

INVITATIONS = "platform.federate.invitations"
TO_STORES = "platform.federate.to_stores"
TO_COORDINATOR = "platform.federate.to_coordinator"
RESULTS = "platform.federate.results"

#: largest protocol message (topic ``max.message.bytes`` and the producers' ``message.max.bytes``)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
RETENTION_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: Mapping[str, str]


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(INVITATIONS, 1, {"retention.ms": str(RETENTION_MS)}),
    TopicSpec(TO_STORES, 3, {"retention.ms": str(RETENTION_MS), "max.message.bytes": str(MAX_MESSAGE_BYTES)}),
    TopicSpec(TO_COORDINATOR, 3, {"retention.ms": str(RETENTION_MS), "max.message.bytes": str(MAX_MESSAGE_BYTES)}),
    TopicSpec(RESULTS, 1, {"retention.ms": str(30 * 24 * 3600 * 1000), "max.message.bytes": str(MAX_MESSAGE_BYTES)}),
)


def partition_for(round_id: str, partitions: int) -> int:
    """The partition carrying every message of ``round_id`` (stable across processes)."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    return int.from_bytes(hashlib.sha256(str(round_id).encode()).digest()[:8], "big") % partitions


def admin_config(config: Mapping[str, object]) -> dict:
    """Keep only what an AdminClient understands from a consumer/producer connection's extras."""
    drop = {"group.id", "auto.offset.reset", "enable.auto.commit", "enable.idempotence", "acks",
            "isolation.level", "linger.ms", "enable.partition.eof"}
    return {k: v for k, v in config.items() if k not in drop}


def ensure_topics(config: Mapping[str, object], *, timeout: float = 30.0) -> list[str]:
    """Create the federation topics that do not exist yet; returns the names created."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(admin_config(config))
    existing = set(admin.list_topics(timeout=timeout).topics)
    todo = [NewTopic(t.name, num_partitions=t.partitions, replication_factor=-1, config=dict(t.config))
            for t in TOPICS if t.name not in existing]
    created = []
    if todo:
        for name, fut in admin.create_topics(todo, request_timeout=timeout).items():
            try:
                fut.result(timeout)
                created.append(name)
            except KafkaException as e:
                if e.args and e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                raise
    return created


def main() -> int:
    """``python -m include.federate.topics``: create the topics (connection ``platform_kafka``)."""
    from include.connections import KAFKA, get_connection

    created = ensure_topics(get_connection(KAFKA).extra)
    print("created: " + (", ".join(created) if created else "none (all exist)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
