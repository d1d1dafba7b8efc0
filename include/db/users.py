"""``users``: accounts, with the email encrypted at rest and argon2id password hashes.

Columns (migration 0006): ``email`` holds a keyed blind index of the normalised address (lookups and
the spec's UNIQUE work on it), ``email_ciphertext``/``email_key_id`` hold the AES-256-GCM ciphertext and
its key id. Plain addresses and passwords never reach the database.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg

from include.security.crypto import Keyring, normalize_email
from include.security.passwords import hash_password, needs_rehash, verify_password

ROLES = ("store_manager", "regional_coordinator", "admin")
_COLS = "id, email_ciphertext, email_key_id, role, created_at, updated_at, last_login, is_active"


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    role: str
    created_at: datetime
    updated_at: datetime
    last_login: datetime | None
    is_active: bool


def email_context(user_id: uuid.UUID) -> str:
    return f"users.email:{user_id}"


def _user(row, keyring: Keyring) -> User:
    uid, token, kid, role, created, updated, last_login, active = row
    return User(uid, keyring.decrypt(token, kid, email_context(uid)), role, created, updated, last_login, active)


def create_user(conn: psycopg.Connection, keyring: Keyring, email: str, password: str, role: str, *,
                user_id: uuid.UUID | None = None, is_active: bool = True) -> uuid.UUID:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    email = normalize_email(email)
    if "@" not in email:
        raise ValueError("email must contain '@'")
    user_id = user_id or uuid.uuid4()
    token, kid = keyring.encrypt(email, email_context(user_id))
    conn.execute(
        """INSERT INTO users (id, email, email_ciphertext, email_key_id, password_hash, role, is_active)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (user_id, keyring.blind_index(email), token, kid, hash_password(password), role, is_active))
    return user_id


def get_user(conn: psycopg.Connection, keyring: Keyring, user_id: uuid.UUID) -> User | None:
    row = conn.execute(f"SELECT {_COLS} FROM users WHERE id = %s", (user_id,)).fetchone()
    return _user(row, keyring) if row else None


def get_user_by_email(conn: psycopg.Connection, keyring: Keyring, email: str) -> User | None:
    row = conn.execute(f"SELECT {_COLS} FROM users WHERE email = %s", (keyring.blind_index(email),)).fetchone()
    return _user(row, keyring) if row else None


def authenticate(conn: psycopg.Connection, keyring: Keyring, email: str, password: str) -> User | None:
    """The active user with this email and password (updates last_login, upgrades old hashes), else None."""
    row = conn.execute("SELECT id, password_hash, is_active FROM users WHERE email = %s",
                       (keyring.blind_index(email),)).fetchone()
    if row is None:
        verify_password(hash_password("timing-equaliser"), password)  # same cost whether or not the user exists
        return None
    uid, pw_hash, active = row
    if not verify_password(pw_hash, password) or not active:
        return None
    if needs_rehash(pw_hash):
        conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (hash_password(password), uid))
    conn.execute("UPDATE users SET last_login = now() WHERE id = %s", (uid,))
    return get_user(conn, keyring, uid)


def set_password(conn: psycopg.Connection, user_id: uuid.UUID, password: str) -> None:
    conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (hash_password(password), user_id))


def reencrypt_emails(conn: psycopg.Connection, keyring: Keyring, *, batch_size: int = 500) -> int:
    """Re-encrypt every email not under the active key, and re-index those not under the index key."""
    prefix = keyring.index_key_id + ":"
    n = 0
    while True:
        rows = conn.execute(
            """SELECT id, email_ciphertext, email_key_id FROM users
                WHERE email_key_id <> %s OR left(email, %s) <> %s
                ORDER BY id LIMIT %s FOR UPDATE""",
            (keyring.active_key_id, len(prefix), prefix, batch_size)).fetchall()
        if not rows:
            return n
        for uid, token, kid in rows:
            plain = keyring.decrypt(token, kid, email_context(uid))
            new_token, new_kid = keyring.encrypt(plain, email_context(uid))
            conn.execute("UPDATE users SET email = %s, email_ciphertext = %s, email_key_id = %s WHERE id = %s",
                         (keyring.blind_index(plain), new_token, new_kid, uid))
        n += len(rows)
