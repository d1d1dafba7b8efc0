"""The database side of the platform API: its login role and its two kinds of connection.

* ``platform_api_postgres`` (connection): a NOINHERIT login role that is a member of the three
  application roles, so it has no privileges until the session layer does ``SET ROLE app_<role>``:
  every data query of the API runs under row-level security of the caller's role and scope.
* ``platform_postgres`` (the owner): only for what must happen whatever the caller may see:
  resolving who the caller is, the audit row of every request (also of refused ones), token
  revocations and login bookkeeping.
"""
from __future__ import annotations

import psycopg

from include.access.permissions import ROLES
from include.connections import API_POSTGRES, get_connection, postgres_dsn
from include.db.session import AppContext, connect, ensure_login_role


def ensure_api_login(conn: psycopg.Connection) -> str:
    """Create or update the login role named by connection ``platform_api_postgres`` (needs CREATEROLE;
    the caller commits). Returns its name."""
    c = get_connection(API_POSTGRES)
    if not c.login or not c.password:
        raise ValueError(f"connection {API_POSTGRES} needs a login and a password")
    ensure_login_role(conn, c.login, c.password, list(ROLES))
    return c.login


def scoped(ctx: AppContext) -> psycopg.Connection:
    """A connection of the API login role with ``ctx`` applied for the whole session."""
    return connect(postgres_dsn(API_POSTGRES), ctx, application_name="platform_api")


def owner() -> psycopg.Connection:
    return connect(application_name="platform_api_owner")
