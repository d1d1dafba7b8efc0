"""The FastAPI app mounted at /platform/v1: routes, refusal handling, one audit row per request."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from include.access import audit as audit_log
from include.access.errors import AccessRefused
from platform_api import routes_auth, routes_federation, routes_stores

log = logging.getLogger("platform_api")
UNAUDITED = {"/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"}

app = FastAPI(
    title="Retail pattern platform API",
    version="1",
    description=(
        "Stores upload transaction files and read their own results; regional coordinators run federated "
        "rounds for their region; admins do everything. Every route needs an Airflow JWT "
        "(`Authorization: Bearer`, from `POST /platform/v1/auth/token`) and the role's permission; the "
        "database enforces the same scope by row-level security. Every request is audited in activity_logs."),
)
app.include_router(routes_auth.router)
app.include_router(routes_stores.router)
app.include_router(routes_federation.router)


@app.exception_handler(AccessRefused)
async def refused(request: Request, exc: AccessRefused) -> JSONResponse:
    request.state.refusal = exc.message
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers or None)


@app.exception_handler(RequestValidationError)
async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    request.state.refusal = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)[:1000]
    return JSONResponse({"detail": errors}, status_code=422)


class AuditMiddleware:
    """Writes one activity_logs row per request, committed before the last byte of the response
    goes out (pure ASGI, so streamed uploads pass through untouched)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path", "").removeprefix(scope.get("root_path", "")) in UNAUDITED:
            return await self.app(scope, receive, send)
        state = {"status": 500, "written": False}

        async def write():
            if not state["written"]:
                state["written"] = True
                await run_in_threadpool(_write_audit, scope, state["status"])

        async def send_audited(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                await write()
            await send(message)

        try:
            await self.app(scope, receive, send_audited)
        finally:
            await write()


def _write_audit(scope, status: int) -> None:
    from include.access import dbroles

    state = scope.get("state") or {}
    a = dict(state.get("audit") or {})
    endpoint = scope.get("endpoint")
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
    path = scope.get("root_path", "") + scope.get("path", "").removeprefix(scope.get("root_path", ""))
    data = {"role": a.pop("role", None), "outcome": state.get("refusal") or ("ok" if status < 400 else "refused"),
            "own_store_id": str(a.pop("own_store_id", None) or "") or None, **a.pop("data", {})}
    try:
        with dbroles.owner() as conn:
            audit_log.record(conn, operation=getattr(endpoint, "__name__", "unrouted"), method=scope["method"],
                             path=path, status=status, user_id=a.get("user_id"), store_id=a.get("store_id"),
                             resource_type=a.get("resource_type"), resource_id=a.get("resource_id"),
                             ip=(scope.get("client") or (None,))[0], user_agent=headers.get("user-agent"), data=data)
            conn.commit()
    except Exception:  # noqa: BLE001 - never turn a served request into an error; say so loudly
        log.exception("platform API: the audit row of %s %s could not be written", scope["method"], path)


app.add_middleware(AuditMiddleware)
