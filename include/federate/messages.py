"""Signed protocol messages of the federated rounds: JSON envelope, canonical form, Ed25519.

Wire form (one JSON object, UTF-8)::

    {"schema_version": 1, "round_id": "...", "phase": "...", "type": "...",
     "sender": "store:...", "recipient": "coordinator:..." | null, "payload": {...},
     "signature": "<base64 Ed25519 signature>"}

* ``recipient`` is ``null`` for a broadcast.
* The signature covers ``SIGNING_DOMAIN`` followed by the *canonical* JSON of every field except
  ``signature``: keys sorted, no whitespace, ASCII only (``\\uXXXX`` escapes), no floats (integers,
  strings, booleans, null, lists and objects only; bytes travel as standard base64). The canonical
  form is recomputed from the parsed object, so a broker or logger that re-indents a message does
  not break it, while any change of a value does.
* The round id and phase are inside the signed body, so a message replayed into another round or
  another phase fails :func:`verify_message`; a second, different message from the same sender for
  the same slot is refused by :class:`ReplayGuard` (and by the secure-aggregation state machines),
  while a byte-identical redelivery (Kafka is at-least-once) is recognised as a duplicate.

Pure module: no I/O, no clock, no randomness.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from include.federate.keys import KeyRegistry, PartyIdentity, UnknownParty, b64decode, b64encode, check_party_id

SCHEMA_VERSION = 1
#: prefix of every signed byte string: separates these signatures from any other use of the keys.
SIGNING_DOMAIN = b"retail-platform/federate/message/v1\x00"
#: largest message accepted by :meth:`SignedMessage.from_json` (a masked vector of 10^6 entries is ~11 MB).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_FIELDS = ("schema_version", "round_id", "phase", "type", "sender", "recipient", "payload", "signature")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/=+-]{0,199}$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class MessageRejected(ValueError):
    """A message failed verification. ``code`` says why (stable, for logs and ``activity_logs``):

    ``malformed``, ``schema_version``, ``unsigned``, ``bad_signature``, ``unknown_sender``,
    ``wrong_round``, ``wrong_phase``, ``wrong_type``, ``wrong_sender``, ``wrong_recipient``,
    ``replay`` (a different message for a slot already filled), ``invalid_payload``.
    """

    def __init__(self, code: str, detail: str, *, message: SignedMessage | None = None) -> None:
        self.code = code
        self.detail = detail
        self.sender = message.sender if message is not None else None
        self.round_id = message.round_id if message is not None else None
        self.msg_type = message.msg_type if message is not None else None
        where = ""
        if message is not None:
            where = f" [round {message.round_id!r}, {message.msg_type} from {message.sender!r}]"
        super().__init__(f"message rejected ({code}){where}: {detail}")


def canonical_json(obj: Any) -> bytes:
    """The canonical encoding: sorted keys, no whitespace, ASCII, no NaN; floats are refused."""
    _check_json_value(obj, "payload")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode(
        "ascii"
    )


def _check_json_value(value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        raise ValueError(f"{path}: floats are not allowed in protocol messages (use integers or strings)")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json_value(item, f"{path}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: object keys must be strings, got {key!r}")
            _check_json_value(item, f"{path}.{key}")
        return
    raise ValueError(f"{path}: value of type {type(value).__name__} is not JSON (encode bytes as base64)")


def check_round_id(round_id: object, *, field: str = "round_id") -> str:
    if not isinstance(round_id, str) or not _ID_RE.match(round_id):
        raise ValueError(f"{field}: invalid round id {round_id!r} (1-200 characters of letters, digits, '._:@/=+-')")
    return round_id


@dataclass(frozen=True)
class SignedMessage:
    """One protocol message. Build with :func:`sign_message`, parse with :meth:`from_json`."""

    round_id: str
    phase: str
    msg_type: str
    sender: str
    recipient: str | None
    payload: Mapping[str, Any]
    signature: bytes = field(repr=False)
    schema_version: int = SCHEMA_VERSION

    def body(self) -> dict[str, Any]:
        """Every field but the signature, as signed."""
        return {
            "schema_version": self.schema_version,
            "round_id": self.round_id,
            "phase": self.phase,
            "type": self.msg_type,
            "sender": self.sender,
            "recipient": self.recipient,
            "payload": self.payload,
        }

    def signing_bytes(self) -> bytes:
        return SIGNING_DOMAIN + canonical_json(self.body())

    def to_dict(self) -> dict[str, Any]:
        d = self.body()
        d["signature"] = b64encode(self.signature)
        return d

    def to_json(self) -> str:
        """Canonical JSON text of the whole message (what the transport sends)."""
        return canonical_json(self.to_dict()).decode("ascii")

    def to_bytes(self) -> bytes:
        return self.to_json().encode("ascii")

    @property
    def message_id(self) -> str:
        """SHA-256 (hex) of the canonical message: a stable id for de-duplication and the audit log."""
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()

    def audit_record(self) -> dict[str, Any]:
        """A small, secret-free summary for ``activity_logs`` (the payload itself is not included)."""
        record = {"message_id": self.message_id, **self.body()}
        del record["payload"]
        return record

    @classmethod
    def from_dict(cls, data: Any) -> SignedMessage:
        """Parse the envelope (structure only: :func:`verify_message` checks signature and context)."""
        if not isinstance(data, Mapping):
            raise MessageRejected("malformed", f"expected a JSON object, got {type(data).__name__}")
        missing = [f for f in _FIELDS if f not in data and f != "signature"]
        extra = sorted(set(data) - set(_FIELDS))
        if missing or extra:
            raise MessageRejected("malformed", f"missing fields {missing}, unknown fields {extra}")
        version = data["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise MessageRejected("malformed", "schema_version must be an integer")
        if version != SCHEMA_VERSION:
            raise MessageRejected("schema_version", f"schema_version {version} is not supported (expected {SCHEMA_VERSION})")
        try:
            check_round_id(data["round_id"])
            check_party_id(data["sender"], field="sender")
            if data["recipient"] is not None:
                check_party_id(data["recipient"], field="recipient")
            for name in ("phase", "type"):
                if not isinstance(data[name], str) or not _NAME_RE.match(data[name]):
                    raise ValueError(f"{name}: invalid name {data[name]!r}")
            if not isinstance(data["payload"], Mapping):
                raise ValueError("payload must be a JSON object")
            _check_json_value(data["payload"], "payload")
        except ValueError as exc:
            raise MessageRejected("malformed", str(exc)) from None
        sig = data.get("signature")
        if sig is None or sig == "":
            signature = b""
        else:
            try:
                signature = b64decode(sig, field="signature", length=64)
            except ValueError as exc:
                raise MessageRejected("bad_signature", str(exc)) from None
        return cls(
            round_id=data["round_id"],
            phase=data["phase"],
            msg_type=data["type"],
            sender=data["sender"],
            recipient=data["recipient"],
            payload=dict(data["payload"]),
            signature=signature,
            schema_version=version,
        )

    @classmethod
    def from_json(cls, text: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> SignedMessage:
        if len(text) > max_bytes:
            raise MessageRejected("malformed", f"message of {len(text)} bytes exceeds the limit of {max_bytes}")
        try:
            data = json.loads(text, parse_float=_refuse_float, parse_constant=_refuse_float)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MessageRejected("malformed", f"not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _refuse_float(token: str) -> Any:
    raise ValueError(f"floats are not allowed in protocol messages: {token}")


def sign_message(
    identity: PartyIdentity,
    *,
    round_id: str,
    phase: str,
    msg_type: str,
    payload: Mapping[str, Any],
    recipient: str | None = None,
) -> SignedMessage:
    """Build and sign a message from ``identity``."""
    check_round_id(round_id)
    if recipient is not None:
        check_party_id(recipient, field="recipient")
    for name, value in (("phase", phase), ("msg_type", msg_type)):
        if not _NAME_RE.match(value):
            raise ValueError(f"{name}: invalid name {value!r}")
    unsigned = SignedMessage(
        round_id=round_id,
        phase=phase,
        msg_type=msg_type,
        sender=identity.party_id,
        recipient=recipient,
        payload=dict(payload),
        signature=b"",
    )
    sig = identity.sign(unsigned.signing_bytes())
    return SignedMessage(**{**unsigned.__dict__, "signature": sig})


def verify_message(
    message: SignedMessage | Mapping[str, Any] | str | bytes,
    registry: KeyRegistry,
    *,
    round_id: str,
    phase: str | Iterable[str] | None = None,
    msg_type: str | Iterable[str] | None = None,
    sender: str | Iterable[str] | None = None,
    recipient: str | None | Iterable[str | None] = ...,  # type: ignore[assignment]
) -> SignedMessage:
    """Parse (if needed) and verify ``message``; return it, or raise :class:`MessageRejected`.

    Checks, in order: structure and schema version; a signature is present; the sender is in the
    registry; the signature verifies; the round id is ``round_id``; and, when given, the phase,
    type, sender and recipient are among the expected ones (``recipient=None`` expects a broadcast;
    leave it out to accept any recipient).
    """
    if isinstance(message, (str, bytes)):
        message = SignedMessage.from_json(message)
    elif not isinstance(message, SignedMessage):
        message = SignedMessage.from_dict(message)
    if not message.signature:
        raise MessageRejected("unsigned", "the message carries no signature", message=message)
    try:
        ok = registry.verify(message.sender, message.signature, message.signing_bytes())
    except UnknownParty as exc:
        raise MessageRejected("unknown_sender", str(exc), message=message) from None
    if not ok:
        raise MessageRejected("bad_signature", "Ed25519 signature does not verify (tampered or forged)", message=message)
    if message.round_id != round_id:
        raise MessageRejected("wrong_round", f"expected round {round_id!r}", message=message)
    for name, expected, actual in (
        ("phase", phase, message.phase),
        ("type", msg_type, message.msg_type),
        ("sender", sender, message.sender),
    ):
        if expected is None:
            continue
        allowed = {expected} if isinstance(expected, str) else set(expected)
        if actual not in allowed:
            code = {"phase": "wrong_phase", "type": "wrong_type", "sender": "wrong_sender"}[name]
            raise MessageRejected(code, f"{name} {actual!r} not expected here (expected {sorted(allowed)})", message=message)
    if recipient is not ...:
        allowed_r = {recipient} if (recipient is None or isinstance(recipient, str)) else set(recipient)
        if message.recipient not in allowed_r:
            raise MessageRejected(
                "wrong_recipient", f"recipient {message.recipient!r} not expected (expected {sorted(map(str, allowed_r))})",
                message=message,
            )
    return message


class ReplayGuard:
    """Remembers one message per (round, type, sender, recipient) slot.

    :meth:`admit` returns True for a new message, False for a byte-identical redelivery (drop it),
    and raises ``MessageRejected("replay")`` for a *different* message in a filled slot (a replay of
    another message, or equivocation by the sender).
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str, str | None], str] = {}

    def admit(self, message: SignedMessage) -> bool:
        slot = (message.round_id, message.msg_type, message.sender, message.recipient)
        mid = message.message_id
        old = self._seen.get(slot)
        if old is None:
            self._seen[slot] = mid
            return True
        if old == mid:
            return False
        raise MessageRejected("replay", "a different message was already accepted for this round, type and sender", message=message)
