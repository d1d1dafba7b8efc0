"""psycopg 3 connections with the application context that row-level security reads.

The context becomes the session settings ``app.current_role``, ``app.current_user_id``,
``app.current_store_id``, ``app.current_region_id`` and, for an application role, ``SET ROLE
app_<role>`` (the login role must be a member of it). Migration 0004 explains the policies.

    from include.db.session import AppContext, connect, transaction_as

    with connect() as conn:                                   # owner/service: no scope, sees all
        ...
    ctx = AppContext.store_manager(store_id, user_id=uid)
    with connect(context=ctx) as conn:                        # whole connection scoped (SET ROLE)
        ...
    with connect() as conn, transaction_as(conn, ctx):        # one transaction scoped (SET LOCAL)
        ...

A pooled connection (Airflow hook) should use :func:`transaction_as`: its settings end with the
transaction, so nothing leaks to the pool's next user.

Data-access functions in ``include.db`` never commit: the caller decides the transaction.
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import psycopg
from psycopg import sql

ROLE_STORE_MANAGER = "store_manager"
ROLE_REGIONAL_COORDINATOR = "regional_coordinator"
ROLE_ADMIN = "admin"
ROLE_SERVICE = "service"  # the owner role's pipelines: no SET ROLE, scope optional
DB_ROLES = {
    ROLE_STORE_MANAGER: "app_store_manager",
    ROLE_REGIONAL_COORDINATOR: "app_regional_coordinator",
    ROLE_ADMIN: "app_admin",
}
SETTINGS = ("app.current_role", "app.current_user_id", "app.current_store_id", "app.current_region_id")


class ContextError(ValueError):
    """An application context is incomplete or cannot be applied."""


def _uuid(v, name: str) -> str | None:
    if v is None or v == "":
        return None
    try:
        return str(v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)))
    except ValueError:
        raise ContextError(f"{name} must be a UUID, got {v!r}") from None


@dataclass(frozen=True)
class AppContext:
    role: str = ROLE_SERVICE
    user_id: uuid.UUID | str | None = None
    store_id: uuid.UUID | str | None = None
    region_id: uuid.UUID | str | None = None

    def __post_init__(self) -> None:
        if self.role not in DB_ROLES and self.role != ROLE_SERVICE:
            raise ContextError(f"role must be one of {sorted([*DB_ROLES, ROLE_SERVICE])}, got {self.role!r}")
        for name in ("user_id", "store_id", "region_id"):
            object.__setattr__(self, name, _uuid(getattr(self, name), name))
        if self.role == ROLE_STORE_MANAGER and not self.store_id:
            raise ContextError("a store_manager context needs store_id")
        if self.role == ROLE_REGIONAL_COORDINATOR and not self.region_id:
            raise ContextError("a regional_coordinator context needs region_id")

    @classmethod
    def store_manager(cls, store_id, user_id=None) -> "AppContext":
        return cls(ROLE_STORE_MANAGER, user_id=user_id, store_id=store_id)

    @classmethod
    def regional_coordinator(cls, region_id, user_id=None) -> "AppContext":
        return cls(ROLE_REGIONAL_COORDINATOR, user_id=user_id, region_id=region_id)

    @classmethod
    def admin(cls, user_id=None) -> "AppContext":
        return cls(ROLE_ADMIN, user_id=user_id)

    @classmethod
    def service(cls, store_id=None, region_id=None, user_id=None) -> "AppContext":
        """The owner role acting for the platform; with store_id it is held to that store by RLS."""
        return cls(ROLE_SERVICE, user_id=user_id, store_id=store_id, region_id=region_id)

    @property
    def db_role(self) -> str | None:
        return DB_ROLES.get(self.role)

    def settings(self) -> dict[str, str]:
        return {"app.current_role": self.role, "app.current_user_id": self.user_id or "",
                "app.current_store_id": self.store_id or "", "app.current_region_id": self.region_id or ""}


def default_dsn() -> str:
    from include.connections import postgres_dsn

    return postgres_dsn()


def apply_context(conn: psycopg.Connection, ctx: AppContext, *, local: bool = False) -> None:
    """Set role and session settings on ``conn``; ``local`` limits them to the current transaction."""
    scope = sql.SQL("LOCAL") if local else sql.SQL("SESSION")
    with conn.cursor() as cur:
        if ctx.db_role:
            try:
                cur.execute(sql.SQL("SET {} ROLE {}").format(scope, sql.Identifier(ctx.db_role)))
            except psycopg.errors.InsufficientPrivilege as e:
                raise ContextError(f"login role {conn.info.user!r} cannot act as {ctx.db_role!r}: "
                                   f"GRANT {ctx.db_role} TO {conn.info.user} ({e.diag.message_primary})") from e
        else:
            cur.execute(sql.SQL("SET {} ROLE NONE").format(scope))
        for name, value in ctx.settings().items():
            cur.execute("SELECT set_config(%s, %s, %s)", (name, value, local))


def clear_context(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute("RESET ROLE")
        for name in SETTINGS:
            cur.execute("SELECT set_config(%s, '', false)", (name,))


def connect(dsn: str | None = None, context: AppContext | None = None, *, autocommit: bool = False,
            **kwargs) -> psycopg.Connection:
    """A psycopg 3 connection (default DSN: connection ``platform_postgres``), with ``context`` applied."""
    kwargs.setdefault("application_name", "platform")
    conn = psycopg.connect(dsn or default_dsn(), autocommit=autocommit, **kwargs)
    if context is not None:
        try:
            apply_context(conn, context)
            if not autocommit:
                conn.commit()
        except Exception:
            conn.close()
            raise
    return conn


@contextmanager
def transaction_as(conn: psycopg.Connection, ctx: AppContext) -> Iterator[psycopg.Connection]:
    """A transaction on ``conn`` run as ``ctx`` (SET LOCAL): committed on success, rolled back on error."""
    with conn.transaction():
        apply_context(conn, ctx, local=True)
        yield conn


def ensure_login_role(conn: psycopg.Connection, name: str, password: str, member_of: list[str],
                      *, inherit: bool = False) -> None:
    """Create (or update) a LOGIN role that may act as the given application roles (e.g. for the API).

    ``member_of`` takes application role names (store_manager, ...) or database role names. With
    ``inherit=False`` the login role has no privileges until the data-access layer does SET ROLE.
    Needs CREATEROLE (the owner role has it).
    """
    roles = [DB_ROLES.get(r, r) for r in member_of]
    with conn.cursor() as cur:
        exists = cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
        cur.execute(sql.SQL("{} ROLE {} LOGIN {} PASSWORD {}").format(
            verb, sql.Identifier(name), sql.SQL("INHERIT" if inherit else "NOINHERIT"), sql.Literal(password)))
        for r in roles:
            cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(r), sql.Identifier(name)))
