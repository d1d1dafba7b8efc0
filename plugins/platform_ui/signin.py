"""Sign-in and sign-out of platform users in the browser (docs/dashboards.md "Sign-in").

Platform users have FAB users with a password nobody knows, so FAB's own form cannot sign them in. Here:

* ``GET /dashboards/login?next=`` the form (email, password); no authentication needed.
* ``POST /dashboards/login`` (form-encoded) runs the platform login itself (``platform_ui.access.sign_in`` =
  ``platform_api.routes_auth.issue_token``: throttling, argon2id, disabled accounts, audit, ``last_login``, the
  token's session), sets Airflow's UI cookie ``_token`` as Airflow's own login does (path
  ``get_cookie_path()``, HttpOnly, SameSite=Lax, Secure on https / with ``[api] ssl_cert``) and redirects
  (303) to ``next`` when it is a same-origin path, else to Airflow's home. A refusal re-renders the form
  with the message (401, 429 with ``Retry-After``), the email kept, never the password.
* ``GET|POST /dashboards/logout`` revokes the cookie's token through the platform's revocation (as
  ``POST /platform/v1/auth/logout``), deletes the cookie and redirects to the form.

The form carries a double-submit token (cookie ``_dashboards_signin`` = hidden field): a page of another
site cannot sign a browser in to an account of its choosing (login CSRF).
"""
from __future__ import annotations

import hmac
import html
import secrets
from pathlib import Path
from string import Template
from typing import Annotated
from urllib.parse import urlsplit

import jwt
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from platform_ui.access import AccessRefused, Forbidden, sign_in, sign_out

router = APIRouter(include_in_schema=False)
TEMPLATE = Template((Path(__file__).parent / "templates" / "login.html").read_text())
CSRF_COOKIE = "_dashboards_signin"
NO_STORE = {"Cache-Control": "no-store"}


def cookie_path() -> str:
    """The path Airflow scopes its cookies to (``[api] base_url``'s path, or ``/``): also its home."""
    from airflow.api_fastapi.app import get_cookie_path

    return get_cookie_path()


def secure(request: Request) -> bool:
    """As Airflow's own login: https, or the api-server has a certificate (TLS behind no proxy headers)."""
    from airflow.configuration import conf

    return request.base_url.scheme == "https" or bool(conf.get("api", "ssl_cert", fallback=""))


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this origin: one leading ``/`` followed by no ``/`` or ``\\`` (browsers
    read ``//host`` and ``/\\host`` as another host), no backslash, no control character or space (browsers
    drop tabs and newlines, so ``/\\t/host`` would become ``//host``), no scheme or host. Anything else:
    Airflow's home."""
    home = cookie_path()
    if not value or len(value) > 2048 or not value.startswith("/") or value[1:2] in ("/", "\\"):
        return home
    if "\\" in value or any(c <= " " or c == "\x7f" for c in value):
        return home
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return home
    return value


def _fab_login_url() -> str:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login()
    except Exception:  # noqa: BLE001 - only a hint on the page
        return cookie_path() + "auth/login/"


def form(request: Request, *, status: int = 200, error: str = "", email: str = "", next_: str = "",
         headers: dict | None = None) -> HTMLResponse:
    """The sign-in page: every value HTML-escaped; a fresh anti-CSRF token unless the browser has one."""
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    error_html = f'<p class="error" id="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = TEMPLATE.substitute(error=error_html, email=html.escape(email), next=html.escape(next_),
                               csrf=html.escape(token), fab_login=html.escape(_fab_login_url()))
    resp = HTMLResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})
    resp.set_cookie(CSRF_COOKIE, token, path=cookie_path(), secure=secure(request), httponly=True, samesite="strict")
    return resp


@router.get("/login")
def dashboard_login_form(request: Request, next: str = "") -> HTMLResponse:  # noqa: A002 - the parameter's name
    return form(request, next_=next)


@router.post("/login")
async def dashboard_login(request: Request, email: Annotated[str, Form(max_length=1024)] = "",
                          password: Annotated[str, Form(max_length=4096)] = "",
                          next_: Annotated[str, Form(alias="next", max_length=4096)] = "",
                          csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    expected = request.cookies.get(CSRF_COOKIE)
    try:
        if not expected or not hmac.compare_digest(expected.encode(), csrf.encode()):
            raise Forbidden("the sign-in form has expired or was not sent by this site: please sign in again")
        token = await run_in_threadpool(sign_in, request, email, password)
    except AccessRefused as e:
        request.state.refusal = e.message            # the audit row's outcome, as the platform API's handler does
        return form(request, status=e.status, error=e.message, email=email, next_=next_, headers=e.headers or None)
    resp = RedirectResponse(safe_next(next_), status_code=303, headers=NO_STORE)
    resp.set_cookie(COOKIE_NAME_JWT_TOKEN, token, path=cookie_path(), secure=secure(request), httponly=True,
                    samesite="lax")
    resp.delete_cookie(CSRF_COOKIE, path=cookie_path(), secure=secure(request), httponly=True, samesite="strict")
    return resp


@router.api_route("/logout", methods=["GET", "POST"])
async def dashboard_logout(request: Request) -> RedirectResponse:
    from airflow.api_fastapi.app import get_auth_manager

    token = request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if token:
        try:   # signature, expiry, audience, Airflow's own revocations: only a valid token is worth revoking
            user = await get_auth_manager().get_user_from_token(token)
        except jwt.InvalidTokenError:
            user = None
        if user is not None:
            claims = jwt.decode(token, options={"verify_signature": False})
            username = getattr(user, "username", None) or user.get_name()
            await run_in_threadpool(sign_out, request, claims, str(username))
    resp = RedirectResponse("login", status_code=303, headers=NO_STORE)
    resp.delete_cookie(COOKIE_NAME_JWT_TOKEN, path=cookie_path(), secure=secure(request), httponly=True,
                       samesite="lax")
    return resp
