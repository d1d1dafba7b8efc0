"""Key rotation of the encrypted columns (users.email, local_patterns.pattern_items).

Procedure: (1) add a new key and make it active in the ``platform_encryption`` secret
(``python -m include.security add-key k2``); (2) run :func:`rotate_encryption_keys` (CLI
``python -m include.security rotate``), which re-encrypts every row under the active key and
re-computes email blind indexes under the current index key, in the caller's transaction; (3) only then
remove the old key from the secret.
"""
from __future__ import annotations

import logging

import psycopg

from include.db.mining import reencrypt_local_patterns
from include.db.users import reencrypt_emails
from include.security.crypto import Keyring

log = logging.getLogger(__name__)


def rotate_encryption_keys(conn: psycopg.Connection, keyring: Keyring) -> dict[str, int]:
    """Re-encrypt all rows not under ``keyring``'s active key, in one transaction; returns rows per table."""
    with conn.transaction():
        counts = {"users": reencrypt_emails(conn, keyring), "local_patterns": reencrypt_local_patterns(conn, keyring)}
    log.info("re-encrypted under key %s: %s", keyring.active_key_id, counts)
    return counts


def keys_in_use(conn: psycopg.Connection) -> dict[str, int]:
    """Rows per key id still in the database (a key may be retired when its count is 0)."""
    rows = conn.execute(
        """SELECT email_key_id, count(*) FROM users GROUP BY 1
           UNION ALL
           SELECT items_key_id, count(*) FROM local_patterns WHERE items_key_id IS NOT NULL GROUP BY 1""").fetchall()
    out: dict[str, int] = {}
    for kid, n in rows:
        out[kid] = out.get(kid, 0) + n
    return out
