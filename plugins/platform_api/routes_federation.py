"""Federated rounds (coordinators of their region, admins) and server_configs (admins)."""
from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from include.access import views
from include.access import models as m
from include.access.models import ConfigUpdate, RoundRequest
from include.access.permissions import CONFIGS, CREATE, EDIT, GLOBAL_PATTERNS, READ, ROUNDS
from platform_api import deps
from platform_api.airflow_runs import trigger

router = APIRouter(responses=deps.REFUSALS)
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


def _caller(action: str, resource: str):
    return Annotated[deps.Caller, Depends(deps.access(action, resource))]


@router.post("/rounds", status_code=202, tags=["rounds"],
             summary="Start a federated round (DAG federated_round) with validated params")
def start_round(request: Request, body: RoundRequest, caller: _caller(CREATE, ROUNDS)) -> m.RunStarted:
    with deps.scoped(caller) as conn:
        conf = views.round_conf(conn, caller.principal, body)
    deps.audit(request, data={"store_ids": conf["store_ids"]})
    return {"dag_run_id": trigger("federated_round", conf, user_name=caller.username), "conf": conf}


@router.get("/rounds", tags=["rounds"], summary="Rounds of the caller's region (admins: all)")
def list_rounds(caller: _caller(READ, ROUNDS), limit: Limit = 100, offset: Offset = 0) -> list[m.Round]:
    with deps.scoped(caller) as conn:
        return views.rounds(conn, caller.principal, limit=limit, offset=offset)


@router.get("/rounds/{round_id}", tags=["rounds"], summary="One round with its params and levels")
def get_round(request: Request, round_id: uuid.UUID, caller: _caller(READ, ROUNDS)) -> m.RoundDetail:
    deps.audit(request, resource_type="federated_rounds", resource_id=round_id)
    with deps.scoped(caller) as conn:
        return views.round_(conn, caller.principal, round_id)


@router.get("/rounds/{round_id}/patterns", tags=["rounds"], summary="The global patterns a round released")
def list_global_patterns(request: Request, round_id: uuid.UUID, caller: _caller(READ, GLOBAL_PATTERNS),
                         limit: Limit = 100, offset: Offset = 0) -> list[m.GlobalPattern]:
    deps.audit(request, resource_type="federated_rounds", resource_id=round_id)
    with deps.scoped(caller) as conn:
        return views.global_patterns(conn, caller.principal, round_id, limit=limit, offset=offset)


@router.get("/configs", tags=["admin"], summary="server_configs")
def list_configs(caller: _caller(READ, CONFIGS)) -> list[m.Config]:
    with deps.scoped(caller) as conn:
        return views.configs(conn)


@router.put("/configs/{config_key}", tags=["admin"], summary="Change a server_configs value (audited)")
def set_config(request: Request, body: ConfigUpdate, caller: _caller(EDIT, CONFIGS),
               config_key: Annotated[str, Path(max_length=100)]) -> m.Config:
    deps.audit(request, resource_type="server_configs", data={"config_key": config_key})
    with deps.scoped(caller) as conn:
        out = views.set_config(conn, config_key, body.config_value)
        conn.commit()
    return out
