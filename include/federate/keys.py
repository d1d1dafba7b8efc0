"""Long-term identities of the parties of a federated round and the registry of their public keys.

Every party (each store client and the coordinator) has one Ed25519 signing key. Its public half is
pinned in a :class:`KeyRegistry` (the chain's PKI: stored by the platform, distributed out of band),
and every protocol message is signed with it (see :mod:`include.federate.messages`). The per-round
X25519 keys of secure aggregation are *not* here: they are ephemeral, made by
:class:`include.federate.secagg.SecAggClient` for one round and thrown away after it.

Pure module: no I/O. Callers load and store key material (the private key stays at its owner).
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: party ids: ``store:<uuid>``, ``coordinator:<region>``, ... (letters, digits and ``._:@/-``).
PARTY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")


class KeyMaterialError(ValueError):
    """Bad key material or an unknown party (a ``ValueError``; the message names the party)."""


class UnknownParty(KeyMaterialError):
    """The registry has no public key for this party id."""


def check_party_id(party_id: object, *, field: str = "party_id") -> str:
    """Return ``party_id`` if it is a valid party id, else raise ``ValueError`` naming ``field``."""
    if not isinstance(party_id, str) or not PARTY_ID_RE.match(party_id):
        raise ValueError(
            f"{field}: invalid party id {party_id!r} (1-128 characters of letters, digits and '._:@/-', "
            "starting with a letter or digit)"
        )
    return party_id


def b64encode(data: bytes) -> str:
    """Standard base64 with padding: the one encoding of bytes in protocol messages."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: object, *, field: str, length: int | None = None) -> bytes:
    """Strict base64 decoding (canonical form only); ``length`` checks the decoded size."""
    if not isinstance(text, str):
        raise ValueError(f"{field}: expected a base64 string, got {type(text).__name__}")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"{field}: invalid base64 ({exc})") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise ValueError(f"{field}: base64 is not in canonical form")
    if length is not None and len(data) != length:
        raise ValueError(f"{field}: expected {length} bytes, got {len(data)}")
    return data


def _public_key(value: Ed25519PublicKey | bytes | str, *, party_id: str) -> Ed25519PublicKey:
    if isinstance(value, Ed25519PublicKey):
        return value
    if isinstance(value, str):
        value = b64decode(value, field=f"public key of {party_id}", length=32)
    if isinstance(value, (bytes, bytearray)) and len(value) == 32:
        return Ed25519PublicKey.from_public_bytes(bytes(value))
    raise KeyMaterialError(f"public key of {party_id}: expected 32 raw bytes, base64 text or an Ed25519PublicKey")


@dataclass(frozen=True)
class PartyIdentity:
    """A party's id and its Ed25519 signing key (kept by the party only)."""

    party_id: str
    signing_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        check_party_id(self.party_id)
        if not isinstance(self.signing_key, Ed25519PrivateKey):
            raise TypeError("signing_key must be an Ed25519PrivateKey")

    @classmethod
    def generate(cls, party_id: str) -> PartyIdentity:
        return cls(party_id, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, party_id: str, raw: bytes) -> PartyIdentity:
        """From the 32-byte raw private key (as returned by :meth:`private_bytes`)."""
        if len(raw) != 32:
            raise KeyMaterialError(f"private key of {party_id}: expected 32 bytes, got {len(raw)}")
        return cls(party_id, Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        return self.signing_key.private_bytes_raw()

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def public_key_b64(self) -> str:
        return b64encode(self.public_key.public_bytes_raw())

    def sign(self, data: bytes) -> bytes:
        return self.signing_key.sign(data)

    def __repr__(self) -> str:  # never print the private key
        return f"PartyIdentity(party_id={self.party_id!r}, public_key={self.public_key_b64!r})"


class KeyRegistry(Mapping[str, Ed25519PublicKey]):
    """Pinned Ed25519 public keys by party id (the coordinator's and every store's).

    A message whose sender is not registered is rejected; registering a different key for a party
    that already has one is refused (rotate by building a new registry).
    """

    def __init__(self, keys: Mapping[str, Ed25519PublicKey | bytes | str] | None = None) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for party_id, key in (keys or {}).items():
            self.add(party_id, key)

    @classmethod
    def of(cls, identities: Iterable[PartyIdentity]) -> KeyRegistry:
        """The registry of the public halves of ``identities`` (tests, local simulation)."""
        return cls({i.party_id: i.public_key for i in identities})

    def add(self, party_id: str, key: Ed25519PublicKey | bytes | str) -> None:
        check_party_id(party_id)
        pub = _public_key(key, party_id=party_id)
        old = self._keys.get(party_id)
        if old is not None and old.public_bytes_raw() != pub.public_bytes_raw():
            raise KeyMaterialError(f"party {party_id!r} already has a different public key in the registry")
        self._keys[party_id] = pub

    def __getitem__(self, party_id: str) -> Ed25519PublicKey:
        try:
            return self._keys[party_id]
        except KeyError:
            raise UnknownParty(f"unknown party {party_id!r}: no public key in the registry") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def verify(self, party_id: str, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` is ``party_id``'s Ed25519 signature of ``data``."""
        try:
            self[party_id].verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def to_dict(self) -> dict[str, str]:
        """``{party_id: base64 raw public key}``, the storable form."""
        return {p: b64encode(k.public_bytes_raw()) for p, k in sorted(self._keys.items())}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> KeyRegistry:
        return cls(dict(data))
