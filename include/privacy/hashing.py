"""Keyed hashing of item and itemset ids (``privacy_configs.hash_patterns``).

id = first 64 bits of HMAC-SHA256(K_chain, canonical encoding of the sorted, de-duplicated item list),
shown as 16 lower-case hex digits. The canonical encoding is a domain tag, then for each item (sorted by
its UTF-8 bytes) a 4-byte big-endian length and the UTF-8 bytes, so no two item lists share an encoding.
An item's id is the id of the one-item list.

The chain-wide key K_chain is an argument: the DAG layer reads it from an Airflow connection
(:data:`HMAC_CONN_ID`), it is never logged, never stored in the database, and never sent to the
coordinator. This is pseudonymisation of the coordinator's view, *not* a privacy mechanism: whoever
holds the key can rebuild the table of a public catalogue (:class:`HashDecoder`).
"""
from __future__ import annotations

import binascii
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes, hmac

HMAC_CONN_ID = "platform_privacy_hmac"   # password = the key, hex-encoded (≥ 32 hex digits)
MIN_KEY_BYTES = 16
_DOMAIN = b"retail-platform/itemset-id/v1\x00"
_FINGERPRINT = b"retail-platform/key-fingerprint/v1\x00"


class HashKeyError(ValueError):
    """The key is missing or too short (the message never contains the key)."""


class HashKey:
    """A keyed-hash key. ``repr``/``str`` never show the key bytes."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes | bytearray | str):
        if isinstance(key, str):
            try:
                key = binascii.unhexlify(key.strip())
            except (binascii.Error, ValueError):
                raise HashKeyError("hash key must be hex-encoded bytes") from None
        key = bytes(key)
        if len(key) < MIN_KEY_BYTES:
            raise HashKeyError(f"hash key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        self._key = key

    def __repr__(self) -> str:
        return f"HashKey(fingerprint={self.fingerprint})"

    __str__ = __repr__

    def _mac(self, data: bytes) -> bytes:
        h = hmac.HMAC(self._key, hashes.SHA256())
        h.update(data)
        return h.finalize()

    @property
    def fingerprint(self) -> str:
        """A public 64-bit tag telling keys apart (HMAC of a fixed label; reveals nothing of the key)."""
        return self._mac(_FINGERPRINT)[:8].hex()

    def itemset_id(self, items: Iterable[str]) -> str:
        return self._mac(canonical_encoding(items))[:8].hex()

    def item_id(self, item: str) -> str:
        return self.itemset_id((item,))

    def itemset_id_int(self, items: Iterable[str]) -> int:
        """The same id as a signed 64-bit integer (fits a BIGINT column)."""
        return int.from_bytes(self._mac(canonical_encoding(items))[:8], "big", signed=True)


def as_key(key) -> HashKey:
    if isinstance(key, HashKey):
        return key
    if key is None:
        raise HashKeyError("hash_patterns is on but no hash key was given "
                           f"(set connection '{HMAC_CONN_ID}' with the hex key as password)")
    return HashKey(key)


def hash_bounded(txs, key: "HashKey") -> list:
    """Clipped transactions with every item replaced by its keyed id (items re-sorted by id, as
    :class:`~include.privacy.bounding.BoundedTransaction` keeps them canonical). Clipping happened on
    the names, so the values are exactly those of the plain transactions."""
    from .bounding import BoundedTransaction

    ids: dict[str, str] = {}
    out = []
    for t in txs:
        pairs = sorted(((ids.get(i) or ids.setdefault(i, key.item_id(i))), u) for i, u in zip(t.items, t.utilities))
        out.append(BoundedTransaction(tuple(i for i, _ in pairs), tuple(u for _, u in pairs)))
    return out


def canonical_encoding(items: Iterable[str]) -> bytes:
    raw = sorted({str(i).encode("utf-8") for i in items})
    if not raw:
        raise ValueError("empty itemset")
    out = bytearray(_DOMAIN)
    for b in raw:
        out += len(b).to_bytes(4, "big") + b
    return bytes(out)


class HashDecoder:
    """Maps keyed ids back to item names for a key holder, given the (public) item catalogue."""

    def __init__(self, key, catalogue: Iterable[str] = ()):
        self._key = as_key(key)
        self._names: dict[str, str] = {}
        self.add_items(catalogue)

    def add_items(self, items: Iterable[str]) -> None:
        for i in items:
            h = self._key.item_id(i)
            other = self._names.setdefault(h, i)
            if other != i:
                raise ValueError(f"64-bit id collision between two items (id {h})")

    def decode_item(self, item_hash: str) -> str | None:
        return self._names.get(item_hash.lower())

    def decode_itemset(self, item_hashes: Iterable[str]) -> tuple[str, ...] | None:
        """Item names (sorted) or None if any id is unknown."""
        names = [self.decode_item(h) for h in item_hashes]
        if any(n is None for n in names):
            return None
        return tuple(sorted(names))

    def dictionary(self) -> dict[str, str]:
        return dict(self._names)
