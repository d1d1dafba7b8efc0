"""Login (throttled, argon2id, last_login), logout (revokes the token) and who-am-I.

:func:`issue_token` and :func:`revoke_token` are the platform login and logout themselves: the dashboards'
sign-in form (plugins/platform_ui) calls the same two functions, so throttling, audit, ``last_login`` and
the token's session are identical whichever door a user comes in by."""
from __future__ import annotations

from typing import Annotated

import jwt
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from include.access import tokens
from include.access.errors import NotAuthenticated, Throttled
from include.access import models as m
from include.access.models import Login
from include.db.configs import get_config
from include.db.users import authenticate
from platform_api import deps

router = APIRouter(tags=["auth"])
Anyone = Annotated[deps.Caller, Depends(deps.access(None, None))]


def _fab_user(username: str):
    from airflow.providers.fab.auth_manager.models import User
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as s:
        user = s.scalars(select(User).where(User.username == username)).one_or_none()
        if user is not None:
            s.expunge(user)
        return user


def issue_token(request: Request, body: Login) -> dict:
    """The platform login: throttle check (429 with Retry-After), argon2id check and ``last_login``
    (401 for wrong credentials or a disabled account, each failure counted), the audit details of this
    request, an Airflow JWT of the user's FAB user, recorded as a session for revocation. Blocking (run it
    in a thread pool). Raises :class:`Throttled` / :class:`NotAuthenticated`."""
    from airflow.api_fastapi.app import get_auth_manager

    ip = request.client.host if request.client else None
    with deps.dbroles.owner() as conn:
        throttle = tokens.LoginThrottle(deps.redis(), max_failures=int(get_config(conn, "api_login_max_failures")),
                                        window_s=int(get_config(conn, "api_login_lockout_seconds")))
        wait = throttle.retry_after(body.email, ip)
        if wait:
            raise Throttled(f"too many failed logins: try again in {wait} s", **{"Retry-After": str(wait)})
        user = authenticate(conn, deps.keyring(), body.email, body.password)
        conn.commit()
        if user is None:
            n = throttle.failed(body.email, ip)
            deps.audit(request, data={"failures_in_window": n})
            raise NotAuthenticated("wrong email or password, or the account is disabled")
        throttle.succeeded(body.email)
        deps.audit(request, user_id=user.id, role=user.role)
        fab = _fab_user(str(user.id))
        if fab is None or not fab.is_active:
            raise NotAuthenticated(f"user {user.id} has no active Airflow user: run `python -m include.access sync-roles`")
        ttl = int(get_config(conn, "api_token_ttl_seconds"))
    token = get_auth_manager().generate_jwt(fab, expiration_time_in_seconds=ttl)
    tokens.record_token(deps.redis(), user.id, jwt.decode(token, options={"verify_signature": False}), ip=ip)
    return {"access_token": token, "token_type": "bearer", "expires_in": ttl}


@router.post("/auth/token", status_code=201, summary="Log in with email and password; returns an Airflow JWT",
             responses={401: {"description": "wrong credentials"}, 429: {"description": "too many failures"}})
async def login(request: Request, body: Login) -> m.Token:
    return await run_in_threadpool(issue_token, request, body)


@router.post("/auth/logout", summary="Revoke the token of this request")
def logout(caller: Anyone) -> m.Revoked:
    if not revoke_token(caller.claims, caller.principal.user_id):
        raise NotAuthenticated("this token has no jti/exp and cannot be revoked: it is not a platform token")
    return {"revoked": True}


def revoke_token(claims: dict, user_id, *, reason: str = "logout") -> bool:
    """The platform logout: revoke the token of these (validated) claims until its expiry, on the
    platform's list (``TokenRevocations``: PostgreSQL + Redis) and on Airflow's own (its REST API and UI
    refuse it too). False when it has no jti/exp (not a platform token)."""
    from include.access.airflow_sync import revoke_in_airflow

    if not claims.get("jti") or not claims.get("exp"):
        return False
    with deps.dbroles.owner() as conn:
        tokens.revoke(conn, deps.redis(), claims["jti"], claims["exp"], user_id=user_id, reason=reason)
        conn.commit()
    revoke_in_airflow([(claims["jti"], int(claims["exp"]))])
    return True


@router.get("/me", summary="The caller: role and the store or region they act for")
def me(caller: Anyone) -> m.Me:
    p = caller.principal
    return {"user_id": p.user_id, "role": p.role, "store_id": p.store_id, "region_id": p.region_id,
            "token_expires_at": caller.claims.get("exp")}
