"""Keyed hashing of item and itemset ids."""
from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys

import pytest

from include.privacy.hashing import HashDecoder, HashKey, HashKeyError, as_key, canonical_encoding

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def test_matches_an_independent_hmac_sha256():
    enc = b"retail-platform/itemset-id/v1\x00" + b"".join(
        len(x).to_bytes(4, "big") + x for x in (b"bread", b"milk"))
    assert canonical_encoding(["milk", "bread"]) == enc
    assert HashKey(KEY).itemset_id(["milk", "bread"]) == hmac.new(KEY, enc, hashlib.sha256).digest()[:8].hex()


def test_canonical_order_and_duplicates():
    k = HashKey(KEY)
    assert k.itemset_id(["b", "a", "a"]) == k.itemset_id(("a", "b"))
    assert k.item_id("a") == k.itemset_id(["a"])
    assert len(k.item_id("a")) == 16
    assert k.itemset_id(["ab", "c"]) != k.itemset_id(["a", "bc"])      # length-prefixed: no ambiguity
    assert -2 ** 63 <= k.itemset_id_int(["a"]) < 2 ** 63
    assert k.itemset_id_int(["a"]).to_bytes(8, "big", signed=True).hex() == k.item_id("a")


def test_stable_across_processes_and_different_under_another_key():
    code = ("from include.privacy.hashing import HashKey;"
            f"print(HashKey(bytes(range(32))).itemset_id(['milk', 'bread', 'Käse']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert out.stdout.strip() == HashKey(KEY).itemset_id(["bread", "Käse", "milk"])
    assert HashKey(OTHER).itemset_id(["milk", "bread", "Käse"]) != out.stdout.strip()


def test_key_handling_never_shows_the_key():
    k = HashKey(KEY.hex())
    assert KEY.hex() not in repr(k) and KEY.hex() not in str(k)
    assert k.fingerprint == HashKey(KEY).fingerprint != HashKey(OTHER).fingerprint
    with pytest.raises(HashKeyError, match="at least 16 bytes"):
        HashKey(b"short")
    with pytest.raises(HashKeyError, match="hex"):
        HashKey("not hex!")
    with pytest.raises(HashKeyError, match="no hash key"):
        as_key(None)


def test_decoder():
    k = HashKey(KEY)
    d = HashDecoder(KEY, ["milk", "bread", "eggs"])
    assert d.decode_item(k.item_id("milk")) == "milk"
    assert d.decode_itemset([k.item_id("milk"), k.item_id("bread")]) == ("bread", "milk")
    assert d.decode_itemset([k.item_id("milk"), k.item_id("caviar")]) is None
    assert HashDecoder(OTHER, ["milk"]).decode_item(k.item_id("milk")) is None
