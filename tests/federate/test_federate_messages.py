"""Signed protocol messages: canonical form, signatures, rejection of tampered/unsigned/replayed ones."""
from __future__ import annotations

import json

import pytest

from include.federate.keys import KeyMaterialError, KeyRegistry, PartyIdentity, UnknownParty, b64decode
from include.federate.messages import (
    MessageRejected,
    ReplayGuard,
    SignedMessage,
    canonical_json,
    sign_message,
    verify_message,
)


@pytest.fixture
def alice():
    return PartyIdentity.generate("store:alice")


@pytest.fixture
def registry(alice):
    return KeyRegistry.of([alice, PartyIdentity.generate("coordinator:eu")])


def _msg(identity, **kw):
    args = dict(round_id="round-1", phase="advertise_keys", msg_type="advertise_keys",
                payload={"c_pk": "AAAA", "n": 3, "nested": {"é": [1, None, True]}}, recipient="coordinator:eu")
    args.update(kw)
    return sign_message(identity, **args)


def _rejected(code, fn, *a, **kw):
    with pytest.raises(MessageRejected) as info:
        fn(*a, **kw)
    assert info.value.code == code, str(info.value)
    return info.value


def test_round_trip_and_canonical_form(alice, registry):
    msg = _msg(alice)
    text = msg.to_json()
    assert text == canonical_json(json.loads(text)).decode()
    assert " " not in text and text.isascii()
    back = verify_message(text, registry, round_id="round-1", phase="advertise_keys", msg_type="advertise_keys",
                          sender="store:alice", recipient="coordinator:eu")
    assert back == msg and back.message_id == msg.message_id
    # a transport that re-indents or reorders the JSON does not break the signature
    pretty = json.dumps(json.loads(text), indent=2, sort_keys=False)
    assert verify_message(pretty, registry, round_id="round-1").message_id == msg.message_id
    rec = msg.audit_record()
    assert rec["sender"] == "store:alice" and "payload" not in rec


@pytest.mark.parametrize("field,value", [
    ("payload", {"c_pk": "AAAB", "n": 3, "nested": {"é": [1, None, True]}}),
    ("payload", {"c_pk": "AAAA", "n": 4, "nested": {"é": [1, None, True]}}),
    ("sender", "coordinator:eu"),
    ("recipient", None),
    ("phase", "share_keys"),
    ("type", "share_keys"),
    ("round_id", "round-2"),
])
def test_tampered_message_is_rejected(alice, registry, field, value):
    d = _msg(alice).to_dict()
    d[field] = value
    err = _rejected("bad_signature", verify_message, json.dumps(d), registry, round_id=d["round_id"])
    assert "tampered" in str(err)


def test_unsigned_and_forged_messages_are_rejected(alice, registry):
    d = _msg(alice).to_dict()
    del d["signature"]
    _rejected("unsigned", verify_message, d, registry, round_id="round-1")
    d["signature"] = ""
    _rejected("unsigned", verify_message, d, registry, round_id="round-1")
    mallory = PartyIdentity.generate("store:alice")  # claims alice's id with another key
    _rejected("bad_signature", verify_message, _msg(mallory), registry, round_id="round-1")
    _rejected("unknown_sender", verify_message, _msg(PartyIdentity.generate("store:bob")), registry, round_id="round-1")
    d = _msg(alice).to_dict()
    d["signature"] = d["signature"][:-4]
    _rejected("bad_signature", verify_message, d, registry, round_id="round-1")


def test_replay_into_another_round_or_phase_is_rejected(alice, registry):
    msg = _msg(alice)
    _rejected("wrong_round", verify_message, msg, registry, round_id="round-2")
    _rejected("wrong_phase", verify_message, msg, registry, round_id="round-1", phase="masked_input")
    _rejected("wrong_type", verify_message, msg, registry, round_id="round-1", msg_type="masked_input")
    _rejected("wrong_sender", verify_message, msg, registry, round_id="round-1", sender=["store:bob"])
    _rejected("wrong_recipient", verify_message, msg, registry, round_id="round-1", recipient=None)


def test_replay_guard(alice):
    guard = ReplayGuard()
    first = _msg(alice)
    assert guard.admit(first) is True
    assert guard.admit(SignedMessage.from_json(first.to_json())) is False  # redelivery
    _rejected("replay", guard.admit, _msg(alice, payload={"c_pk": "BBBB"}))
    assert guard.admit(_msg(alice, round_id="round-2")) is True


@pytest.mark.parametrize("text,code", [
    ("not json", "malformed"),
    ("[1, 2]", "malformed"),
    ('{"schema_version": 1}', "malformed"),
    ('{"schema_version": 2, "round_id": "r", "phase": "p", "type": "t", "sender": "s", "recipient": null, '
     '"payload": {}, "signature": ""}', "schema_version"),
    ('{"schema_version": 1, "round_id": "r", "phase": "p", "type": "t", "sender": "s", "recipient": null, '
     '"payload": {"x": 1.5}, "signature": ""}', "malformed"),
    ('{"schema_version": 1, "round_id": "r", "phase": "p", "type": "t", "sender": "s", "recipient": null, '
     '"payload": {}, "signature": "", "extra": 1}', "malformed"),
    ('{"schema_version": 1, "round_id": "r r", "phase": "p", "type": "t", "sender": "s", "recipient": null, '
     '"payload": {}, "signature": ""}', "malformed"),
])
def test_malformed_messages(text, code):
    _rejected(code, SignedMessage.from_json, text)


def test_floats_and_bytes_cannot_be_signed(alice):
    with pytest.raises(ValueError, match="floats"):
        _msg(alice, payload={"x": 0.1})
    with pytest.raises(ValueError, match="base64"):
        _msg(alice, payload={"x": b"raw"})


def test_registry(alice):
    reg = KeyRegistry.from_dict({"store:alice": alice.public_key_b64})
    assert reg.to_dict() == {"store:alice": alice.public_key_b64}
    reg.add("store:alice", alice.public_key)  # same key again: fine
    with pytest.raises(KeyMaterialError, match="different public key"):
        reg.add("store:alice", PartyIdentity.generate("x").public_key)
    with pytest.raises(UnknownParty):
        reg["store:nobody"]
    with pytest.raises(ValueError, match="party id"):
        PartyIdentity.generate("bad id with spaces")
    again = PartyIdentity.from_private_bytes("store:alice", alice.private_bytes())
    assert again.public_key_b64 == alice.public_key_b64
    from include.federate.keys import b64encode
    assert b64encode(alice.private_bytes()) not in repr(alice)
    with pytest.raises(ValueError, match="canonical"):
        b64decode("QR==", field="x")  # decodes like "QQ==": not the one canonical text
    with pytest.raises(ValueError, match="padding"):
        b64decode("QQ", field="x")
