"""Users and stores of the platform (spec 2.1) and their bindings: a store manager manages exactly
one store (``stores.manager_id``), a regional coordinator coordinates one region (``user_regions``).

Functions take a psycopg connection of the owner role (or an admin context) and never commit. They
raise :class:`AccountError` (bad input, with what is wrong) or :class:`NotFound`.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg

from include.access.permissions import ADMIN, REGIONAL_COORDINATOR, ROLES, STORE_MANAGER
from include.db import stores as db_stores
from include.db import users as db_users
from include.security.crypto import Keyring

MIN_PASSWORD_LENGTH = 12


class AccountError(ValueError):
    """A users/stores command cannot be applied; the message says why."""


class NotFound(AccountError):
    pass


@dataclass(frozen=True)
class Principal:
    """Who a platform user is for access decisions: role and the store/region they are bound to."""
    user_id: uuid.UUID
    role: str
    is_active: bool
    store_id: uuid.UUID | None = None
    region_id: uuid.UUID | None = None


def as_uuid(value, what: str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise AccountError(f"{what} must be a UUID, got {value!r}") from None


def check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")


def resolve_user(conn: psycopg.Connection, keyring: Keyring, ref: str) -> uuid.UUID:
    """A user id from a reference: a user id or an email address."""
    if "@" in str(ref):
        user = db_users.get_user_by_email(conn, keyring, ref)
        if user is None:
            raise NotFound(f"no user with email {ref!r}")
        return user.id
    uid = as_uuid(ref, "user")
    if conn.execute("SELECT 1 FROM users WHERE id = %s", (uid,)).fetchone() is None:
        raise NotFound(f"no user {uid}")
    return uid


def load_principal(conn: psycopg.Connection, user_id) -> Principal | None:
    row = conn.execute(
        """SELECT u.id, u.role, u.is_active, s.id, COALESCE(r.region_id, s.region_id)
             FROM users u
             LEFT JOIN stores s ON s.manager_id = u.id
             LEFT JOIN user_regions r ON r.user_id = u.id
            WHERE u.id = %s""", (user_id,)).fetchone()
    if row is None:
        return None
    uid, role, active, store_id, region_id = row
    return Principal(uid, role, bool(active), store_id, region_id)


def _store(conn: psycopg.Connection, store_id) -> db_stores.Store:
    store = db_stores.get_store(conn, as_uuid(store_id, "store"))
    if store is None:
        raise NotFound(f"no store {store_id}")
    return store


def _bind(conn: psycopg.Connection, user_id: uuid.UUID, role: str, store_id, region_id) -> None:
    if role == STORE_MANAGER:
        if store_id is None or region_id is not None:
            raise AccountError("a store_manager is bound to exactly one store: give --store (and no --region)")
        assign_manager(conn, store_id, user_id)
    elif role == REGIONAL_COORDINATOR:
        if region_id is None or store_id is not None:
            raise AccountError("a regional_coordinator is bound to one region: give --region (and no --store)")
        conn.execute("INSERT INTO user_regions (user_id, region_id) VALUES (%s, %s)",
                     (user_id, as_uuid(region_id, "region")))
    elif store_id is not None or region_id is not None:
        raise AccountError("an admin is bound to no store or region: drop --store/--region")


def _unbind(conn: psycopg.Connection, user_id: uuid.UUID) -> None:
    conn.execute("UPDATE stores SET manager_id = NULL WHERE manager_id = %s", (user_id,))
    conn.execute("DELETE FROM user_regions WHERE user_id = %s", (user_id,))


def add_user(conn: psycopg.Connection, keyring: Keyring, email: str, password: str, role: str, *,
             store_id=None, region_id=None) -> uuid.UUID:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    check_password(password)
    if db_users.get_user_by_email(conn, keyring, email) is not None:
        raise AccountError(f"a user with email {email!r} exists already")
    try:
        uid = db_users.create_user(conn, keyring, email, password, role)
    except ValueError as e:
        raise AccountError(str(e)) from None
    _bind(conn, uid, role, store_id, region_id)
    return uid


def set_role(conn: psycopg.Connection, user_id: uuid.UUID, role: str, *, store_id=None, region_id=None) -> None:
    """Change the role and its binding in one go (the old binding is removed)."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    _unbind(conn, user_id)
    conn.execute("UPDATE users SET role = %s WHERE id = %s", (role, user_id))
    _bind(conn, user_id, role, store_id, region_id)


def set_active(conn: psycopg.Connection, user_id: uuid.UUID, active: bool) -> None:
    conn.execute("UPDATE users SET is_active = %s WHERE id = %s", (active, user_id))


def set_password(conn: psycopg.Connection, user_id: uuid.UUID, password: str) -> None:
    check_password(password)
    db_users.set_password(conn, user_id, password)


def add_store(conn: psycopg.Connection, name: str, *, location: str | None = None, region_id=None,
              manager_id=None) -> uuid.UUID:
    if not (name or "").strip():
        raise AccountError("store name must not be empty")
    sid = db_stores.create_store(conn, name.strip(), location=location,
                                 region_id=as_uuid(region_id, "region") if region_id else None)
    if manager_id is not None:
        assign_manager(conn, sid, manager_id)
    return sid


def assign_manager(conn: psycopg.Connection, store_id, user_id) -> None:
    """Make ``user_id`` (a store_manager; None: nobody) the manager of the store; a manager who had
    another store leaves it (one store per manager)."""
    store = _store(conn, store_id)
    if user_id is not None:
        user_id = as_uuid(user_id, "user")
        role = conn.execute("SELECT role FROM users WHERE id = %s", (user_id,)).fetchone()
        if role is None:
            raise NotFound(f"no user {user_id}")
        if role[0] != STORE_MANAGER:
            raise AccountError(f"user {user_id} is a {role[0]}, not a store_manager: "
                               f"change it with `users set-role {user_id} store_manager --store {store.id}`")
        conn.execute("UPDATE stores SET manager_id = NULL WHERE manager_id = %s AND id <> %s", (user_id, store.id))
    conn.execute("UPDATE stores SET manager_id = %s WHERE id = %s", (user_id, store.id))


def set_region(conn: psycopg.Connection, store_id, region_id) -> None:
    store = _store(conn, store_id)
    conn.execute("UPDATE stores SET region_id = %s WHERE id = %s",
                 (as_uuid(region_id, "region") if region_id else None, store.id))


def deactivate_store(conn: psycopg.Connection, store_id) -> None:
    db_stores.set_active(conn, _store(conn, store_id).id, False)


__all__ = ["ADMIN", "AccountError", "NotFound", "Principal", "add_store", "add_user", "as_uuid",
           "assign_manager", "check_password", "deactivate_store", "load_principal", "resolve_user",
           "set_active", "set_password", "set_region", "set_role"]
