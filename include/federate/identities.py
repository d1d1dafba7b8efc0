"""Parties' Ed25519 identities and the key registry, stored in the platform database.

* ``federate_parties``: the public keys (the registry every party loads, :func:`load_registry`);
* ``federate_party_secrets``: each private key, at its owner (row-level security: a store sees only
  its own), encrypted with the ``platform_encryption`` keyring (:mod:`include.security.crypto`) when
  that connection is configured; otherwise stored with ``key_id = 'plain'`` and a warning is logged.

Also the encrypted per-round client state of a store (``federate_client_states``).
"""
from __future__ import annotations

import base64
import json
import logging

import psycopg

from include.federate.keys import KeyRegistry, PartyIdentity

log = logging.getLogger(__name__)
PLAIN = "plain"


def keyring():
    """The platform keyring, or None when ``platform_encryption`` is not configured."""
    try:
        from include.security.crypto import Keyring

        return Keyring.from_connection()
    except Exception:  # noqa: BLE001 - not configured: callers fall back to key_id 'plain'
        return None


def _seal(text: str, context: str) -> tuple[str, str]:
    kr = keyring()
    if kr is None:
        log.warning("platform_encryption is not configured: %s stored unencrypted (key_id 'plain')",
                    context.split(":")[0])
        return text, PLAIN
    return kr.encrypt(text, context)


def _open(token: str, key_id: str, context: str) -> str:
    if key_id == PLAIN:
        return token
    kr = keyring()
    if kr is None:
        raise RuntimeError(f"{context.split(':')[0]} is encrypted (key {key_id}) but platform_encryption "
                           "is not configured")
    return kr.decrypt(token, key_id, context)


def _scope(conn: psycopg.Connection, store_id) -> None:
    conn.execute("SELECT set_config('app.current_store_id', %s, true)", ("" if store_id is None else str(store_id),))


def ensure_identity(conn: psycopg.Connection, party_id: str, *, role: str, store_id=None,
                    region_id=None) -> PartyIdentity:
    """The party's identity, created (and registered) on first use. Runs in its own transaction."""
    with conn.transaction():
        _scope(conn, store_id)
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"federate_party:{party_id}",))
        row = conn.execute("SELECT secret, key_id FROM federate_party_secrets WHERE party_id = %s",
                           (party_id,)).fetchone()
        if row is not None:
            raw = base64.b64decode(_open(row[0], row[1], f"federate_party_secrets:{party_id}"))
            return PartyIdentity.from_private_bytes(party_id, raw)
        ident = PartyIdentity.generate(party_id)
        conn.execute("INSERT INTO federate_parties (party_id, role, store_id, region_id, public_key) "
                     "VALUES (%s, %s, %s, %s, %s)", (party_id, role, store_id, region_id, ident.public_key_b64))
        token, key_id = _seal(base64.b64encode(ident.private_bytes()).decode(), f"federate_party_secrets:{party_id}")
        conn.execute("INSERT INTO federate_party_secrets (party_id, store_id, secret, key_id) VALUES (%s, %s, %s, %s)",
                     (party_id, store_id, token, key_id))
        return ident


def load_registry(conn: psycopg.Connection) -> KeyRegistry:
    with conn.transaction():
        rows = conn.execute("SELECT party_id, public_key FROM federate_parties").fetchall()
    return KeyRegistry({p: k for p, k in rows})


def save_client_state(conn: psycopg.Connection, store_id, round_id, state: dict) -> None:
    token, key_id = _seal(json.dumps(state, separators=(",", ":")), f"federate_client_states:{store_id}:{round_id}")
    with conn.transaction():
        _scope(conn, store_id)
        conn.execute("""INSERT INTO federate_client_states (store_id, round_id, state, key_id) VALUES (%s, %s, %s, %s)
                        ON CONFLICT (store_id, round_id) DO UPDATE SET state = EXCLUDED.state,
                        key_id = EXCLUDED.key_id, updated_at = now()""", (store_id, round_id, token, key_id))


def load_client_state(conn: psycopg.Connection, store_id, round_id) -> dict | None:
    with conn.transaction():
        _scope(conn, store_id)
        row = conn.execute("SELECT state, key_id FROM federate_client_states WHERE store_id = %s AND round_id = %s",
                           (store_id, round_id)).fetchone()
    if row is None:
        return None
    return json.loads(_open(row[0], row[1], f"federate_client_states:{store_id}:{round_id}"))


def delete_client_state(conn: psycopg.Connection, store_id, round_id) -> None:
    with conn.transaction():
        _scope(conn, store_id)
        conn.execute("DELETE FROM federate_client_states WHERE store_id = %s AND round_id = %s", (store_id, round_id))
