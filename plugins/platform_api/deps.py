"""Dependencies of every route: Airflow's JWT (``GetUserDep``), the token's revocation, the platform
user behind it, the FAB permission of the route, and a database connection scoped to the caller."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Iterator

import jwt
import psycopg
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, Request

from include.access import dbroles, scope, tokens
from include.access.accounts import Principal
from include.access.errors import Forbidden, NotAuthenticated
from include.access.permissions import METHOD


REFUSALS = {401: {"description": "no token, expired or revoked token, disabled user"},
            403: {"description": "invalid token, the role lacks the permission, or the target is out of scope"},
            404: {"description": "the store/file/round does not exist (or is not visible to the caller)"},
            422: {"description": "invalid input (the message names the field)"}}


@lru_cache(maxsize=1)
def redis():
    from include.search.clients import redis_client

    return redis_client()


@lru_cache(maxsize=1)
def keyring():
    from include.security.crypto import Keyring

    return Keyring.from_connection()


@dataclass(frozen=True)
class Caller:
    principal: Principal
    claims: dict
    username: str


def raw_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(COOKIE_NAME_JWT_TOKEN)


def audit(request: Request, **fields) -> None:
    """Details for this request's activity_logs row (written by the audit middleware)."""
    request.state.audit = {**getattr(request.state, "audit", {}), **fields}


def access(action: str | None, resource: str | None):
    """Dependency of a route that needs ``(action, resource)`` (None: any platform user): the caller,
    or 401/403."""

    def dep(request: Request, user: GetUserDep) -> Caller:
        from airflow.api_fastapi.app import get_auth_manager

        token = raw_token(request)
        # Airflow validated signature, algorithm, expiry and audience; only the claims are read here
        claims = jwt.decode(token, options={"verify_signature": False}) if token else {}
        username = getattr(user, "username", None) or user.get_name()
        with dbroles.owner() as owner:
            if claims.get("jti") and tokens.is_revoked(owner, redis(), claims["jti"]):
                raise NotAuthenticated("token has been revoked (logout, disabled account or password change)")
            try:
                p = scope.principal_for(owner, username, [r.name for r in getattr(user, "roles", [])])
            except Forbidden as e:
                if "disabled" in e.message:
                    raise NotAuthenticated(e.message) from None
                raise
        audit(request, user_id=p.user_id, role=p.role, own_store_id=p.store_id)
        if action and not get_auth_manager().is_authorized_custom_view(method=METHOD[action], resource_name=resource, user=user):
            raise Forbidden(f"role {p.role} may not {action.removeprefix('can_')} {resource}")
        return Caller(p, claims, username)

    return dep


def store_scope(request: Request, owner: psycopg.Connection, caller: Caller, store_id) -> dict:
    audit(request, store_id=store_id)
    return scope.require_store(owner, caller.principal, store_id)


@contextmanager
def scoped(caller: Caller) -> Iterator[psycopg.Connection]:
    """A connection of the API login role under the caller's RLS context."""
    conn = dbroles.scoped(scope.context(caller.principal))
    try:
        yield conn
    finally:
        conn.close()


def owner_conn() -> Iterator[psycopg.Connection]:
    conn = dbroles.owner()
    try:
        yield conn
    finally:
        conn.close()


OwnerConn = Annotated[psycopg.Connection, Depends(owner_conn)]
