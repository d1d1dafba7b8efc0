"""Kafka transport of signed protocol messages (confluent-kafka; no Airflow).

The configuration is the ``extra`` dict of the Airflow connections ``platform_kafka`` (consumer side)
and ``platform_kafka_producer`` (librdkafka keys, as :mod:`include.connections` or an Airflow hook
returns them), so this module runs the same in a task, a test or a benchmark.

* :meth:`KafkaTransport.publish` sends one :class:`SignedMessage` (canonical JSON) to the round's
  partition, keyed by the round id, with the message type as a header.
* :class:`PartitionReader` reads one partition from a given offset with a private, group-less
  assignment: every party sees every message of the round, and its position is plain data (an
  offset) that a deferred task can keep and resume from.
* :func:`peek` is the cheap filter a trigger runs on each record before anything is verified.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from include.federate.messages import SignedMessage
from include.federate.topics import MAX_MESSAGE_BYTES, partition_for

log = logging.getLogger(__name__)

_CONSUMER_ONLY = {"group.id", "auto.offset.reset", "enable.auto.commit", "isolation.level", "enable.partition.eof"}
_PRODUCER_ONLY = {"acks", "enable.idempotence", "linger.ms", "message.max.bytes", "compression.type"}


class TransportError(RuntimeError):
    """Kafka refused or lost a message (delivery failed, topic missing, broker unreachable)."""


def producer_config(config: Mapping[str, object]) -> dict:
    out = {k: v for k, v in config.items() if k not in _CONSUMER_ONLY}
    out.setdefault("acks", "all")
    out.setdefault("enable.idempotence", True)
    out["message.max.bytes"] = MAX_MESSAGE_BYTES + 4096
    out.setdefault("linger.ms", 2)
    return out


def consumer_config(config: Mapping[str, object]) -> dict:
    out = {k: v for k, v in config.items() if k not in _PRODUCER_ONLY}
    # private group id: readers assign partitions explicitly and never commit
    out["group.id"] = f"federate-reader-{uuid.uuid4().hex}"
    out["enable.auto.commit"] = False
    out["auto.offset.reset"] = "earliest"
    out.setdefault("fetch.max.bytes", 4 * MAX_MESSAGE_BYTES)
    out.setdefault("fetch.wait.max.ms", 100)
    out.setdefault("receive.message.max.bytes", 4 * MAX_MESSAGE_BYTES + 65536)
    return out


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes


class PartitionReader:
    """Reads ``topic``/``partition`` from ``offset`` on; :attr:`position` is the next offset to read."""

    def __init__(self, config: Mapping[str, object], topic: str, partition: int, offset: int) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.topic, self.partition, self.position = topic, int(partition), int(offset)
        self._consumer = Consumer(consumer_config(config))
        self._consumer.assign([TopicPartition(topic, self.partition, self.position)])

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Record]:
        """The records available within ``timeout`` seconds (possibly none)."""
        out = []
        # poll() returns as soon as one record is there; consume(timeout=0) then drains what is buffered
        # (consume(n, timeout) alone would wait the whole timeout for n records)
        first = self._consumer.poll(timeout)
        if first is None:
            return out
        batch = [first] + self._consumer.consume(num_messages=max_records - 1, timeout=0) if max_records > 1 else [first]
        for m in batch:
            if m.error():
                from confluent_kafka import KafkaError

                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise TransportError(f"kafka read {self.topic}[{self.partition}]: {m.error()}")
            if m.offset() < self.position:
                continue
            out.append(Record(m.topic(), m.partition(), m.offset(), m.value() or b""))
            self.position = m.offset() + 1
        return out

    def close(self) -> None:
        try:
            self._consumer.close()
        except Exception:  # noqa: BLE001 - closing a dead consumer is not an error of the round
            log.debug("closing consumer failed", exc_info=True)

    def __enter__(self) -> PartitionReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class KafkaTransport:
    """Publishing side plus helpers (partition count, end offsets) for one party."""

    def __init__(self, consumer: Mapping[str, object], producer: Mapping[str, object] | None = None) -> None:
        from confluent_kafka import Producer

        self.consumer_settings = dict(consumer)
        self.producer_settings = dict(producer if producer is not None else consumer)
        self._producer = Producer(producer_config(self.producer_settings))
        self._partitions: dict[str, int] = {}
        self._errors: list[str] = []

    # -- metadata ------------------------------------------------------------------------------
    def partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            md = self._producer.list_topics(topic, timeout=10)
            t = md.topics.get(topic)
            if t is None or t.error is not None or not t.partitions:
                raise TransportError(f"topic {topic!r} does not exist (create it with include.federate.topics."
                                     f"ensure_topics): {t.error if t is not None else 'missing'}")
            self._partitions[topic] = len(t.partitions)
        return self._partitions[topic]

    def partition_of(self, topic: str, round_id: str) -> int:
        return partition_for(round_id, self.partitions(topic))

    def end_offset(self, topic: str, partition: int) -> int:
        """The high watermark: the offset the next message of that partition will get."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer(consumer_config(self.consumer_settings))
        try:
            _, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
            return int(high)
        finally:
            c.close()

    def reader(self, topic: str, partition: int, offset: int) -> PartitionReader:
        return PartitionReader(self.consumer_settings, topic, partition, offset)

    # -- publishing ------------------------------------------------------------------------------
    def _delivered(self, err, msg) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err}")

    def publish(self, topic: str, message: SignedMessage, *, key: str | None = None,
                partition: int | None = None, flush: bool = True) -> None:
        value = message.to_bytes()
        if len(value) > MAX_MESSAGE_BYTES:
            raise TransportError(f"{message.msg_type} of {len(value)} bytes exceeds {MAX_MESSAGE_BYTES}; "
                                 "split the candidate vector")
        kw = {} if partition is None else {"partition": int(partition)}
        self._producer.produce(topic, value=value, key=(key or message.round_id).encode(),
                               headers={"type": message.msg_type, "sender": message.sender}, on_delivery=self._delivered,
                               **kw)
        self._producer.poll(0)
        if flush:
            self.flush()

    def publish_many(self, topic: str, messages: Iterable[SignedMessage], *, partition: int | None = None,
                     key: str | None = None) -> int:
        n = 0
        for m in messages:
            self.publish(topic, m, key=key, partition=partition, flush=False)
            n += 1
        self.flush()
        return n

    def flush(self, timeout: float = 30.0) -> None:
        left = self._producer.flush(timeout)
        if left:
            raise TransportError(f"{left} message(s) not delivered within {timeout}s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise TransportError("delivery failed: " + "; ".join(errors[:5]))


def peek(value: bytes | str) -> dict | None:
    """The envelope fields of a record (no payload, no verification), or None if it is not one."""
    try:
        d = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(d, dict) or "round_id" not in d or "type" not in d:
        return None
    return {k: d.get(k) for k in ("round_id", "phase", "type", "sender", "recipient")}


def addressed_to(value: bytes | str, *, round_id: str, party_id: str, types: Iterable[str] | None = None) -> bool:
    """Is the record a message of ``round_id`` (or one of its levels) for ``party_id`` (or a broadcast)?"""
    env = peek(value)
    if env is None:
        return False
    rid = str(env["round_id"])
    if rid != round_id and not rid.startswith(round_id + "/"):
        return False
    if env["recipient"] not in (None, party_id):
        return False
    return types is None or env["type"] in set(types)


def wait_for(reader: PartitionReader, predicate, timeout: float) -> list[Record]:
    """Poll until a record satisfies ``predicate`` or ``timeout`` passes; returns every record read."""
    deadline = time.monotonic() + timeout
    got: list[Record] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got
        batch = reader.poll(min(left, 1.0))
        got.extend(batch)
        if any(predicate(r) for r in batch):
            return got
