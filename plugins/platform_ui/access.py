"""The one place where the dashboards use the platform API's access layer (issue 12, plugins/platform_api):
Airflow's JWT, revocation, the platform principal, FAB permissions, the RLS-scoped connection and the
audit middleware. If that layer's interface changes, only this module changes.

Contract: :func:`caller` is a FastAPI dependency that answers 401/403 like the platform API and returns a
:class:`Viewer` (the caller, their :class:`~include.dashboards.Scope`, and a way to open their scoped
connection). :func:`narrow` checks an explicit store against the caller's scope (404 unknown, 403 not yours).
:func:`sign_in` and :func:`sign_out` are the platform login and logout (``platform_api.routes_auth``) for the
dashboards' sign-in form.
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import psycopg
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, Request
from pydantic import ValidationError

from include.access import dbroles
from include.access.errors import AccessRefused, Forbidden, Invalid, Missing, NotAuthenticated, Unavailable
from include.access.permissions import (FILES, GLOBAL_PATTERNS, METHOD, MINING, PRIVACY, READ, REGIONAL_COORDINATOR,
                                        ROUNDS, STORE_MANAGER, allowed)
from include.access.models import Login
from include.dashboards import Scope
from platform_api import deps, routes_auth
from platform_api.app import AuditMiddleware  # noqa: F401 - re-exported for the app

__all__ = ["FILES", "GLOBAL_PATTERNS", "MINING", "PRIVACY", "READ", "ROUNDS", "AccessRefused", "AuditMiddleware",
           "Forbidden", "Missing", "NotAuthenticated", "Unavailable", "Viewer", "allowed", "caller", "narrow",
           "sign_in", "sign_out"]


@dataclass(frozen=True)
class Viewer:
    caller: deps.Caller
    scope: Scope

    @property
    def role(self) -> str:
        return self.caller.principal.role

    @contextmanager
    def conn(self) -> Iterator[psycopg.Connection]:
        """A connection of the API login role under the caller's RLS context (read only here)."""
        with deps.scoped(self.caller) as c:
            yield c


def scope_of(c: deps.Caller) -> Scope:
    p = c.principal
    if p.role == STORE_MANAGER:
        return Scope(store_id=p.store_id)
    if p.role == REGIONAL_COORDINATOR:
        return Scope(region_id=p.region_id)
    return Scope()


def caller(*resources: str, what: str):
    """Dependency: a platform user whose role may read any of ``resources`` (FAB custom views), else 403
    naming the page ``what``. No resources: any platform user."""
    base = deps.access(None, None)

    def dep(request: Request, user: GetUserDep, c: deps.Caller = Depends(base)) -> Viewer:
        from airflow.api_fastapi.app import get_auth_manager

        if resources:
            am = get_auth_manager()
            if not any(am.is_authorized_custom_view(method=METHOD[READ], resource_name=r, user=user) for r in resources):
                raise Forbidden(f"role {c.principal.role} may not read {what} (needs read on one of: "
                                f"{', '.join(resources)})")
        deps.audit(request, resource_type=f"dashboard:{what}")
        return Viewer(c, scope_of(c))

    return dep


def narrow(request: Request, viewer: Viewer, store_id: uuid.UUID | None) -> Scope:
    """The viewer's scope, narrowed to ``store_id`` if given: 404 when the store does not exist, 403 when it
    is not the caller's store / not in their region."""
    if store_id is None:
        return viewer.scope
    with dbroles.owner() as owner:
        deps.store_scope(request, owner, viewer.caller, store_id)
    return Scope(store_id=store_id, region_id=viewer.scope.region_id)


def sign_in(request: Request, email: str, password: str) -> str:
    """The platform login (``routes_auth.issue_token``: throttling, argon2id, disabled accounts, audit,
    ``last_login``, the token's session) for a submitted form; returns the Airflow JWT. Raises
    :class:`AccessRefused` (401, 429 with ``Retry-After``; 422 for fields the JSON login would refuse).
    Blocking: call it in a thread pool."""
    try:
        body = Login(email=email, password=password)
    except ValidationError:
        raise Invalid("enter your email and password") from None
    return routes_auth.issue_token(request, body)["access_token"]


def sign_out(request: Request, claims: dict, username: str) -> bool:
    """The platform logout (``routes_auth.revoke_token``) of a token Airflow has validated (signature,
    expiry, audience), whose FAB user is ``username`` (= the platform user id). Blocking."""
    try:
        user_id = uuid.UUID(username)
    except ValueError:
        user_id = None      # an Airflow-only FAB user: its token is revoked all the same
    deps.audit(request, user_id=user_id)
    return routes_auth.revoke_token(claims, user_id)
