"""Store routes: metadata, transaction files (upload, list, rejects), mining, local patterns, privacy."""
from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from include.access import uploads, views
from include.access.errors import Conflict, Missing
from include.access import models as m
from include.access.models import MiningRequest
from include.access.permissions import (CREATE, FILES, LOCAL_PATTERNS, MINING, PRIVACY, READ, STORES)
from include.db.configs import get_config
from platform_api import deps
from platform_api.airflow_runs import trigger

router = APIRouter(tags=["stores"], responses=deps.REFUSALS)
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


def _caller(action: str, resource: str):
    return Annotated[deps.Caller, Depends(deps.access(action, resource))]


@router.get("/stores", summary="Store metadata the caller may see (own store, region, or all)")
def list_stores(caller: _caller(READ, STORES), region_id: uuid.UUID | None = None, limit: Limit = 100,
                offset: Offset = 0) -> list[m.Store]:
    with deps.scoped(caller) as conn:
        return views.stores(conn, region_id=region_id, limit=limit, offset=offset)


@router.get("/stores/{store_id}", summary="One store's metadata and activity summary (never transactions)")
def get_store(request: Request, store_id: uuid.UUID, caller: _caller(READ, STORES), owner: deps.OwnerConn) -> m.StoreDetail:
    deps.store_scope(request, owner, caller, store_id)
    with deps.scoped(caller) as conn:
        return views.store(conn, store_id)


@router.post("/stores/{store_id}/files", status_code=201,
             summary="Upload a transaction file: the raw body, streamed; ingestion is started for it",
             openapi_extra={"requestBody": {"required": True, "content": {
                 t: {"schema": {"type": "string", "format": "binary"}}
                 for t in ("application/octet-stream", "text/csv", "application/x-ndjson")}}},
             responses={413: {"description": "too large"}, 415: {"description": "wrong file type"},
                        422: {"description": "bad file name or empty file"}})
async def upload_file(request: Request, store_id: uuid.UUID, caller: _caller(CREATE, FILES),
                      filename: Annotated[str, Query(max_length=255, description="the file's name, e.g. day1.csv")]
                      ) -> m.Uploaded:
    with deps.dbroles.owner() as owner:
        store = await run_in_threadpool(deps.store_scope, request, owner, caller, store_id)
        max_bytes = int(get_config(owner, "api_max_upload_mb") * 1024 * 1024)
    if not store["is_active"]:
        raise Conflict(f"store {store_id} is deactivated: it takes no uploads")
    file_type = uploads.check_name(filename)
    uploads.check_content_type(request.headers.get("content-type"))
    uploads.check_length(request.headers.get("content-length"), max_bytes)
    with uploads.spooled_dir() as d:
        path = await uploads.receive(request.stream(), d, filename, file_type, max_bytes)
        done = await run_in_threadpool(_store_file, caller, store_id, path, file_type)
    deps.audit(request, resource_type="transaction_files", resource_id=done["file_id"])
    try:
        done["dag_run_id"] = await run_in_threadpool(
            trigger, "ingest_transaction_files", {"file": done["file_id"]}, user_name=caller.username)
    except Exception as e:  # noqa: BLE001 - the file is stored and pending: the scheduled run loads it
        done["dag_run_id"], done["ingestion_note"] = None, f"ingestion not started now ({e}); the next scheduled run loads it"
    return done


def _store_file(caller: deps.Caller, store_id: uuid.UUID, path: str, file_type: str) -> dict:
    from include.ingest.upload import UploadError, s3_client, upload_files

    with deps.scoped(caller) as conn:
        try:
            (u,) = upload_files(conn, s3_client(), store_id, [path], file_type=file_type)
        except UploadError as e:
            raise Conflict(str(e)) from None
    return {"file_id": u.file_id, "filename": u.filename, "file_size": u.file_size, "file_type": u.file_type,
            "s3_key": u.s3_key, "content_sha256": u.content_sha256, "duplicate_of": u.duplicate_of,
            "processing_status": "pending"}


@router.get("/stores/{store_id}/files", summary="The store's files with status, error and a link to rejects")
def list_files(request: Request, store_id: uuid.UUID, caller: _caller(READ, FILES), owner: deps.OwnerConn,
               status: Literal["pending", "processing", "completed", "failed"] | None = None,
               limit: Limit = 100, offset: Offset = 0) -> list[m.TransactionFile]:
    deps.store_scope(request, owner, caller, store_id)
    with deps.scoped(caller) as conn:
        rows = views.files(conn, store_id, status=status, limit=limit, offset=offset)
    have = _rejects_keys(store_id) if rows else set()
    for r in rows:
        r["rejects_url"] = (str(request.url_for("get_rejects", store_id=store_id, file_id=r["id"]).path)
                            if _rejects_key(r) in have else None)
    return rows


@router.get("/stores/{store_id}/files/{file_id}", summary="One file of the store")
def get_file(request: Request, store_id: uuid.UUID, file_id: uuid.UUID, caller: _caller(READ, FILES),
             owner: deps.OwnerConn) -> m.TransactionFile:
    deps.store_scope(request, owner, caller, store_id)
    deps.audit(request, resource_type="transaction_files", resource_id=file_id)
    with deps.scoped(caller) as conn:
        return views.file(conn, store_id, file_id)


@router.get("/stores/{store_id}/files/{file_id}/rejects", summary="The rejected transactions of a file (CSV)",
            response_class=StreamingResponse, responses={200: {"content": {"text/csv": {}}}})
def get_rejects(request: Request, store_id: uuid.UUID, file_id: uuid.UUID, caller: _caller(READ, FILES),
                owner: deps.OwnerConn) -> StreamingResponse:
    from include.ingest.load import BUCKET
    from include.ingest.upload import s3_client

    deps.store_scope(request, owner, caller, store_id)
    deps.audit(request, resource_type="transaction_files", resource_id=file_id)
    with deps.scoped(caller) as conn:
        row = views.file(conn, store_id, file_id)
    s3 = s3_client()
    try:
        obj = s3.get_object(Bucket=BUCKET, Key=_rejects_key(row))
    except s3.exceptions.NoSuchKey:
        raise Missing(f"file {file_id} has no rejected transactions") from None
    return StreamingResponse(obj["Body"].iter_chunks(65536), media_type="text/csv")


def _rejects_key(row: dict) -> str:
    from include.ingest.load import rejects_key

    return rejects_key(row["store_id"], row["id"], row["s3_key"])


def _rejects_keys(store_id: uuid.UUID) -> set[str]:
    from include.ingest.load import BUCKET
    from include.ingest.upload import s3_client

    keys = set()
    for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"rejected/{store_id}/"):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


@router.post("/stores/{store_id}/mining-jobs", status_code=202,
             summary="Request a mining run of the store (DAG mine_store_patterns); jobs appear under GET")
def request_mining(request: Request, store_id: uuid.UUID, body: MiningRequest, caller: _caller(CREATE, MINING),
                   owner: deps.OwnerConn) -> m.RunStarted:
    store = deps.store_scope(request, owner, caller, store_id)
    if not store["is_active"]:
        raise Conflict(f"store {store_id} is deactivated")
    conf = {"store_ids": [str(store_id)], **body.conf()}
    return {"dag_run_id": trigger("mine_store_patterns", conf, user_name=caller.username), "conf": conf}


@router.get("/stores/{store_id}/mining-jobs", summary="The store's mining jobs")
def list_mining_jobs(request: Request, store_id: uuid.UUID, caller: _caller(READ, MINING), owner: deps.OwnerConn,
                     limit: Limit = 100, offset: Offset = 0) -> list[m.MiningJob]:
    deps.store_scope(request, owner, caller, store_id)
    with deps.scoped(caller) as conn:
        return views.mining_jobs(conn, store_id, limit=limit, offset=offset)


@router.get("/stores/{store_id}/patterns", summary="The store's current local patterns, best utility first")
def list_local_patterns(request: Request, store_id: uuid.UUID, caller: _caller(READ, LOCAL_PATTERNS),
                        owner: deps.OwnerConn, limit: Limit = 100, offset: Offset = 0) -> list[m.LocalPattern]:
    deps.store_scope(request, owner, caller, store_id)
    with deps.scoped(caller) as conn:
        return views.local_patterns(conn, deps.keyring(), store_id, limit=limit, offset=offset)


@router.get("/stores/{store_id}/privacy", summary="The store's privacy config")
def get_privacy(request: Request, store_id: uuid.UUID, caller: _caller(READ, PRIVACY), owner: deps.OwnerConn) -> m.PrivacyConfig:
    deps.store_scope(request, owner, caller, store_id)
    with deps.scoped(caller) as conn:
        return views.privacy(conn, store_id)


@router.get("/stores/{store_id}/privacy/ledger", summary="The store's privacy budget ledger")
def get_budget_ledger(request: Request, store_id: uuid.UUID, caller: _caller(READ, PRIVACY), owner: deps.OwnerConn,
                      limit: Limit = 100, offset: Offset = 0) -> list[m.LedgerEntry]:
    deps.store_scope(request, owner, caller, store_id)
    with deps.scoped(caller) as conn:
        return views.budget_ledger(conn, store_id, limit=limit, offset=offset)
