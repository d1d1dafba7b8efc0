"""Column-level encryption: AES-256-GCM with key ids, so keys can rotate.

A :class:`Keyring` holds data keys by id (32 random bytes each), the id of the *active* key (new
encryptions), and a separate key for the email blind index. Keys come from the Airflow connection
``platform_encryption`` (env ``AIRFLOW_CONN_PLATFORM_ENCRYPTION`` outside Airflow, a secrets backend
inside), never from code; they never appear in ``repr`` or logs. Connection format (JSON)::

    {"conn_type": "generic",
     "extra": {"active_key_id": "k2",
               "keys": {"k1": "<base64 of 32 bytes>", "k2": "<base64 of 32 bytes>"},
               "index_key_id": "i1", "index_key": "<base64 of 32 bytes>"}}

``python -m include.security new-keyring`` prints one; ``... add-key`` adds a key and makes it active.

Token format stored in the database: ``g1:`` + base64url(nonce(12) || ciphertext || tag(16)), no
padding. The key id is stored beside the token (its own column). The associated data binds a token to
its column, its row/scope and its key id, so a token copied to another row or column does not decrypt.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENCRYPTION_CONN_ID = "platform_encryption"
TOKEN_PREFIX = "g1:"
NONCE_BYTES = 12
KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class KeyringError(RuntimeError):
    """A key is missing or malformed, or the keyring is not configured."""


class DecryptionError(RuntimeError):
    """A token does not decrypt under the named key and context (wrong key, row, column, or tampered)."""


def _b64d(s: str) -> bytes:
    """base64 or base64url, with or without padding."""
    s = s.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)


def _b64e(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def new_key() -> bytes:
    return os.urandom(32)


@dataclass(frozen=True)
class Keyring:
    keys: Mapping[str, bytes] = field(repr=False)
    active_key_id: str
    index_key: bytes = field(repr=False, default=b"")
    index_key_id: str = "i1"

    def __post_init__(self) -> None:
        if self.active_key_id not in self.keys:
            raise KeyringError(f"active key id {self.active_key_id!r} is not among the keys {sorted(self.keys)}")
        for kid, key in self.keys.items():
            if not KEY_ID_RE.match(kid):
                raise KeyringError(f"key id {kid!r}: use 1-32 characters of [A-Za-z0-9_.-]")
            if len(key) != 32:
                raise KeyringError(f"key {kid!r} is {len(key)} bytes; AES-256 needs 32")
        if len(self.index_key) != 32:
            raise KeyringError("index_key must be 32 bytes")
        if not KEY_ID_RE.match(self.index_key_id):
            raise KeyringError(f"index key id {self.index_key_id!r}: use 1-32 characters of [A-Za-z0-9_.-]")

    # construction -----------------------------------------------------------------------------
    @classmethod
    def generate(cls, key_id: str = "k1", index_key_id: str = "i1") -> "Keyring":
        return cls({key_id: new_key()}, key_id, new_key(), index_key_id)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Keyring":
        try:
            keys = {k: _b64d(v) for k, v in d["keys"].items()}
            return cls(keys, d["active_key_id"], _b64d(d["index_key"]), d.get("index_key_id", "i1"))
        except (KeyError, TypeError, ValueError) as e:
            raise KeyringError(f"malformed keyring ({type(e).__name__}: {e}); expected keys, active_key_id, "
                               "index_key") from None

    @classmethod
    def from_connection(cls, conn_id: str = ENCRYPTION_CONN_ID) -> "Keyring":
        """The keyring of an Airflow connection (env ``AIRFLOW_CONN_<ID>``); its ``extra`` holds the keys."""
        from include.connections import ConnectionNotConfigured, get_connection

        try:
            c = get_connection(conn_id)
        except ConnectionNotConfigured as e:
            raise KeyringError(str(e)) from None
        extra = dict(c.extra)
        if not extra and c.password:
            extra = json.loads(c.password)
        return cls.from_dict(extra)

    def to_dict(self) -> dict:
        return {"active_key_id": self.active_key_id,
                "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()},
                "index_key_id": self.index_key_id,
                "index_key": base64.b64encode(self.index_key).decode()}

    def with_new_active_key(self, key_id: str) -> "Keyring":
        if key_id in self.keys:
            raise KeyringError(f"key id {key_id!r} exists already")
        return Keyring({**self.keys, key_id: new_key()}, key_id, self.index_key, self.index_key_id)

    def without_key(self, key_id: str) -> "Keyring":
        """The keyring minus a retired key (after every row was re-encrypted)."""
        if key_id == self.active_key_id:
            raise KeyringError("cannot drop the active key")
        return Keyring({k: v for k, v in self.keys.items() if k != key_id}, self.active_key_id,
                       self.index_key, self.index_key_id)

    # encryption -------------------------------------------------------------------------------
    @staticmethod
    def _aad(context: str, key_id: str) -> bytes:
        return f"{context}|{key_id}".encode("utf-8")

    def encrypt(self, plaintext: str, context: str) -> tuple[str, str]:
        """(token, key_id) of ``plaintext`` under the active key; ``context`` is e.g. ``users.email:<id>``."""
        kid = self.active_key_id
        nonce = os.urandom(NONCE_BYTES)
        ct = AESGCM(self.keys[kid]).encrypt(nonce, plaintext.encode("utf-8"), self._aad(context, kid))
        return TOKEN_PREFIX + _b64e(nonce + ct), kid

    def encrypt_many(self, plaintexts: Iterable[str], context: str) -> tuple[list[str], str]:
        kid = self.active_key_id
        aes, aad = AESGCM(self.keys[kid]), self._aad(context, kid)
        out = []
        for p in plaintexts:
            nonce = os.urandom(NONCE_BYTES)
            out.append(TOKEN_PREFIX + _b64e(nonce + aes.encrypt(nonce, p.encode("utf-8"), aad)))
        return out, kid

    def decrypt(self, token: str, key_id: str, context: str) -> str:
        return self.decrypt_many([token], key_id, context)[0]

    def decrypt_many(self, tokens: Iterable[str], key_id: str, context: str) -> list[str]:
        key = self.keys.get(key_id)
        if key is None:
            raise KeyringError(f"key id {key_id!r} is not in the keyring (known: {sorted(self.keys)}); "
                               "was it retired before every row was re-encrypted?")
        aes, aad = AESGCM(key), self._aad(context, key_id)
        out = []
        for t in tokens:
            if not t.startswith(TOKEN_PREFIX):
                raise DecryptionError(f"not an encrypted token (expected prefix {TOKEN_PREFIX!r}) in {context}")
            raw = _b64d(t[len(TOKEN_PREFIX):])
            try:
                out.append(aes.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad).decode("utf-8"))
            except InvalidTag:
                raise DecryptionError(f"token does not decrypt under key {key_id!r} for {context} "
                                      "(wrong key or row, or tampered)") from None
        return out

    # blind index ------------------------------------------------------------------------------
    def blind_index(self, value: str) -> str:
        """``<index_key_id>:<hex HMAC-SHA256>`` of a normalised value (deterministic, for lookups/UNIQUE)."""
        mac = hmac.new(self.index_key, normalize_email(value).encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{self.index_key_id}:{mac}"


def normalize_email(email: str) -> str:
    return email.strip().lower()
