"""The dashboards' FastAPI app, mounted at /dashboards: the pages (static HTML + JS + the locally served
chart library), their JSON endpoints and the sign-in form (platform_ui.signin). Thin: every query is in
include/dashboards; access goes through platform_ui.access (the platform API's JWT, permissions, scope, RLS,
audit, login and logout)."""
from __future__ import annotations

import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from include.dashboards import Invalid, NotFound
from include.dashboards import ingestion as q_ingestion
from include.dashboards import mining as q_mining
from include.dashboards import privacy as q_privacy
from include.dashboards import rounds as q_rounds
from include.dashboards import search as q_search
from platform_ui.access import (FILES, GLOBAL_PATTERNS, MINING, PRIVACY, READ, ROUNDS, AccessRefused, AuditMiddleware,
                                Unavailable, Viewer, allowed, caller, narrow)
from platform_ui.signin import router as signin_router

STATIC = Path(__file__).parent / "static"
PAGES = {"rounds": "rounds.html", "round": "round.html", "privacy": "privacy.html", "ingestion": "ingestion.html",
         "mining": "mining.html"}

app = FastAPI(title="Platform dashboards", version="1",
              description="JSON behind the dashboards in Airflow's UI (issue 13). Same authentication, "
                          "permissions, scope and audit as the platform API (/platform/v1).")
app.mount("/static", StaticFiles(directory=STATIC), name="static")
app.include_router(signin_router)

Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
AnyUser = Annotated[Viewer, Depends(caller(what="dashboards"))]
RoundsViewer = Annotated[Viewer, Depends(caller(ROUNDS, what="rounds"))]
PatternsViewer = Annotated[Viewer, Depends(caller(GLOBAL_PATTERNS, what="global patterns"))]
# coordinators read their region's ledger (RLS allows it, for the global cap): ROUNDS admits them
PrivacyViewer = Annotated[Viewer, Depends(caller(PRIVACY, ROUNDS, what="privacy budgets"))]
FilesViewer = Annotated[Viewer, Depends(caller(FILES, what="ingestion"))]
MiningViewer = Annotated[Viewer, Depends(caller(MINING, what="mining"))]


def _unsigned_page(request: Request, status: int) -> Response | None:
    """A page asked for without a valid sign-in (401): its shell, still 401, whose script gets the same 401
    from api/... and shows it with the link to the sign-in form (dashboards.js)."""
    page_file = getattr(request.scope.get("endpoint"), "page_file", None)
    if status != 401 or page_file is None:
        return None
    return FileResponse(STATIC / page_file, status_code=401, media_type="text/html",
                        headers={"Cache-Control": "no-store"})


@app.exception_handler(AccessRefused)
async def refused(request: Request, exc: AccessRefused) -> Response:
    request.state.refusal = exc.message
    return _unsigned_page(request, exc.status) or JSONResponse({"detail": exc.message}, status_code=exc.status,
                                                               headers=exc.headers or None)


@app.exception_handler(HTTPException)
async def airflow_refused(request: Request, exc: HTTPException) -> Response:
    """Airflow's own refusals (no cookie, expired or invalid token: GetUserDep) answer as FastAPI does, except
    for a page (above)."""
    request.state.refusal = str(exc.detail)
    return _unsigned_page(request, exc.status_code) or await http_exception_handler(request, exc)


@app.exception_handler(NotFound)
async def not_found(request: Request, exc: NotFound) -> JSONResponse:
    request.state.refusal = str(exc)
    return JSONResponse({"detail": str(exc)}, status_code=404)


@app.exception_handler(Invalid)
async def invalid(request: Request, exc: Invalid) -> JSONResponse:
    request.state.refusal = str(exc)
    return JSONResponse({"detail": str(exc)}, status_code=422)


def _page(name: str):
    def page(viewer: AnyUser) -> FileResponse:
        return FileResponse(STATIC / PAGES[name], media_type="text/html",
                            headers={"Cache-Control": "no-store"})
    page.__name__ = f"dashboard_page_{name}"
    page.page_file = PAGES[name]
    return page


for _name in PAGES:
    app.add_api_route(f"/{_name}", _page(_name), methods=["GET"], include_in_schema=False)


@app.get("/api/me", summary="Who is looking: role and scope")
def dashboard_me(viewer: AnyUser) -> dict:
    p = viewer.caller.principal
    return {"user_id": p.user_id, "role": p.role, "store_id": p.store_id, "region_id": p.region_id}


@app.get("/api/summary", summary="The Home-page widget: what the caller's role may read, in brief")
def dashboard_summary(viewer: AnyUser) -> dict:
    out: dict = {"role": viewer.role}
    with viewer.conn() as c:
        if allowed(viewer.role, READ, ROUNDS):
            r = q_rounds.list_rounds(c, viewer.scope, limit=5)
            out["rounds"] = {"total": r["total"], "by_status": r["by_status"], "latest": r["items"]}
        if allowed(viewer.role, READ, FILES):
            out["files"] = q_ingestion.files_by_status(c, viewer.scope, limit=1)["totals"]
        if allowed(viewer.role, READ, MINING):
            out["mining_jobs"] = q_mining.list_jobs(c, viewer.scope, limit=1)["total"]
    return out


# ---------------------------------------------------------------- rounds
@app.get("/api/rounds", summary="Rounds in scope, newest first (paged)")
def dashboard_rounds(viewer: RoundsViewer, status: Annotated[str | None, Query(max_length=20)] = None,
                     dag_run_id: Annotated[str | None, Query(max_length=250)] = None,
                     limit: Limit = 50, offset: Offset = 0) -> dict:
    with viewer.conn() as c:
        if dag_run_id:
            return {"round_id": q_rounds.round_for_dag_run(c, viewer.scope, dag_run_id)}
        return q_rounds.list_rounds(c, viewer.scope, status=status, limit=limit, offset=offset)


@app.get("/api/rounds/{round_id}", summary="One round: params, levels with timings, stores")
def dashboard_round(request: Request, round_id: uuid.UUID, viewer: RoundsViewer) -> dict:
    request.state.audit = {**getattr(request.state, "audit", {}), "resource_id": round_id}
    with viewer.conn() as c:
        return q_rounds.get_round(c, viewer.scope, round_id)


@app.get("/api/rounds/{round_id}/patterns", summary="A round's global patterns, best first (paged)")
def dashboard_round_patterns(round_id: uuid.UUID, viewer: PatternsViewer, limit: Limit = 20,
                             offset: Offset = 0) -> dict:
    with viewer.conn() as c:
        return q_rounds.round_patterns(c, viewer.scope, round_id, limit=limit, offset=offset)


@app.get("/api/patterns/trend", summary="One itemset across the rounds in scope")
def dashboard_pattern_trend(viewer: PatternsViewer,
                            items: Annotated[list[str], Query(min_length=1, max_length=20)],
                            limit: Limit = 50) -> dict:
    with viewer.conn() as c:
        return q_rounds.pattern_trend(c, viewer.scope, items, limit=limit)


@lru_cache(maxsize=1)
def _es():
    from include.search.clients import es_client

    return es_client()


@app.get("/api/search", summary="Global patterns by their items (Elasticsearch), linked to their rounds")
def dashboard_search(viewer: PatternsViewer, q: Annotated[str, Query(min_length=1, max_length=200)],
                     round: Annotated[str, Query(max_length=12)] = "latest",
                     size: Annotated[int, Query(ge=1, le=100)] = 20) -> dict:
    from include.search.indices import Namespace

    ns = Namespace(os.environ.get("PLATFORM_SEARCH_INDEX_PREFIX", ""))   # as the index_search DAG
    try:
        return q_search.search(_es(), viewer.scope, q, round=round, size=size, ns=ns)
    except (Invalid, AccessRefused):
        raise
    except Exception as e:  # noqa: BLE001 - Elasticsearch down or misconfigured: say so, not a bare 500
        raise Unavailable(f"pattern search is unavailable (Elasticsearch): {type(e).__name__}: {e}"[:500]) from e


# ---------------------------------------------------------------- privacy budget
@app.get("/api/privacy", summary="Per store: ε spent vs lifetime budget, warnings, the global cap (paged)")
def dashboard_privacy(request: Request, viewer: PrivacyViewer, store_id: uuid.UUID | None = None,
                      limit: Limit = 50, offset: Offset = 0) -> dict:
    scope = narrow(request, viewer, store_id)
    with viewer.conn() as c:
        return q_privacy.list_budgets(c, scope, limit=limit, offset=offset)


@app.get("/api/privacy/stores/{store_id}", summary="One store's spend over time")
def dashboard_privacy_store(request: Request, store_id: uuid.UUID, viewer: PrivacyViewer) -> dict:
    scope = narrow(request, viewer, store_id)
    with viewer.conn() as c:
        return q_privacy.budget_series(c, scope, store_id)


# ---------------------------------------------------------------- ingestion
@app.get("/api/ingestion/files", summary="Files per status and store (paged over stores)")
def dashboard_ingestion_files(request: Request, viewer: FilesViewer, store_id: uuid.UUID | None = None,
                              limit: Limit = 50, offset: Offset = 0) -> dict:
    scope = narrow(request, viewer, store_id)
    with viewer.conn() as c:
        return q_ingestion.files_by_status(c, scope, limit=limit, offset=offset)


@app.get("/api/ingestion/rows", summary="Transactions loaded and rejected over time")
def dashboard_ingestion_rows(request: Request, viewer: FilesViewer, store_id: uuid.UUID | None = None,
                             days: Annotated[int, Query(ge=1, le=3660)] = 30,
                             bucket: Annotated[str, Query(pattern="^(hour|day)$")] = "day") -> dict:
    scope = narrow(request, viewer, store_id)
    with viewer.conn() as c:
        return q_ingestion.rows_over_time(c, scope, days=days, bucket=bucket)


@app.get("/api/ingestion/errors", summary="Latest file errors with the rejects link (paged)")
def dashboard_ingestion_errors(request: Request, viewer: FilesViewer, store_id: uuid.UUID | None = None,
                               limit: Limit = 20, offset: Offset = 0) -> dict:
    scope = narrow(request, viewer, store_id)
    with viewer.conn() as c:
        return q_ingestion.latest_errors(c, scope, limit=limit, offset=offset)


# ---------------------------------------------------------------- mining
@app.get("/api/mining/stores", summary="Mining per store (paged over stores)")
def dashboard_mining_stores(request: Request, viewer: MiningViewer, store_id: uuid.UUID | None = None,
                            limit: Limit = 50, offset: Offset = 0) -> dict:
    scope = narrow(request, viewer, store_id)
    with viewer.conn() as c:
        return q_mining.store_summary(c, scope, limit=limit, offset=offset)


@app.get("/api/mining/jobs", summary="Mining jobs, newest first (paged)")
def dashboard_mining_jobs(request: Request, viewer: MiningViewer, store_id: uuid.UUID | None = None,
                          limit: Limit = 50, offset: Offset = 0) -> dict:
    scope = narrow(request, viewer, store_id)
    with viewer.conn() as c:
        return q_mining.list_jobs(c, scope, limit=limit, offset=offset)


app.add_middleware(AuditMiddleware)
