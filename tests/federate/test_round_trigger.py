"""The Kafka trigger the store client task defers on (run as the triggerer runs it), against the real
broker: it fires on the first message of the round addressed to the store (or broadcast), skips the
rest, and reports a timeout."""
from __future__ import annotations

import asyncio
import uuid

import pytest

pytestmark = pytest.mark.timeout(120)


async def _first_event(trigger):
    async for ev in trigger.run():
        return ev.payload
    return None


def test_round_message_trigger_fires_for_this_store_only():
    from dags._shared.federate import TRIGGER_CLASSPATH, RoundMessageTrigger
    from include.connections import KAFKA, KAFKA_PRODUCER, get_connection
    from include.federate.keys import PartyIdentity
    from include.federate.messages import sign_message
    from include.federate.topics import TO_STORES, ensure_topics
    from include.federate.transport import KafkaTransport

    cons, prod = get_connection(KAFKA).extra, get_connection(KAFKA_PRODUCER).extra
    ensure_topics(cons)
    tr = KafkaTransport(cons, prod)
    rid = str(uuid.uuid4())
    p = tr.partition_of(TO_STORES, rid)
    start = tr.end_offset(TO_STORES, p)
    coord = PartyIdentity.generate("coordinator:trigger-test")
    me, other = "store:me", "store:other"

    def msg(recipient, round_id=rid):
        return sign_message(coord, round_id=round_id, phase="level", msg_type="level_open", payload={},
                            recipient=recipient)

    tr.publish(TO_STORES, msg(other), partition=p)                        # someone else's
    tr.publish(TO_STORES, msg(None, str(uuid.uuid4())), partition=p)      # another round's broadcast
    tr.publish(TO_STORES, msg(me, f"{rid}/level-2"), partition=p)         # mine (a level of the round)
    trig = RoundMessageTrigger(TO_STORES, p, start, rid, me, timeout_seconds=30)
    assert trig.serialize()[0] == TRIGGER_CLASSPATH
    ev = asyncio.run(_first_event(trig))
    assert ev == {"status": "message", "offset": start + 2}
    ev = asyncio.run(_first_event(RoundMessageTrigger(TO_STORES, p, start + 3, rid, me, timeout_seconds=3)))
    assert ev["status"] == "timeout" and ev["offset"] >= start + 3


def test_trigger_classpath_is_importable_like_the_triggerer_does():
    import importlib

    mod, _, name = "dags._shared.federate.RoundMessageTrigger".rpartition(".")
    assert getattr(importlib.import_module(mod), name).__name__ == name
