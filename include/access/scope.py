"""Who the caller is and what they may reach: the platform principal behind an Airflow user, the
database context of a request, and the store/region scope checks (403 out of scope, 404 unknown).

Airflow's FAB user of a platform user has the platform user id as username (see airflow_sync).
"""
from __future__ import annotations

import uuid

import psycopg

from include.access.accounts import Principal, load_principal
from include.access.errors import Forbidden, Missing
from include.access.permissions import ADMIN, REGIONAL_COORDINATOR, STORE_MANAGER
from include.db.session import AppContext


def principal_for(owner: psycopg.Connection, username: str, fab_roles: list[str]) -> Principal:
    """The active platform user behind an Airflow user, bound as its role requires."""
    try:
        uid = uuid.UUID(str(username))
    except ValueError:
        raise Forbidden(f"Airflow user {username!r} is not a platform user") from None
    p = load_principal(owner, uid)
    if p is None:
        raise Forbidden(f"Airflow user {username!r} is not a platform user")
    if not p.is_active:
        raise Forbidden(f"user {uid} is disabled")
    if fab_roles != [p.role]:
        raise Forbidden(f"user {uid} has role {p.role} but Airflow roles {fab_roles} (Airflow caches users for "
                        "[fab] cache_ttl seconds; if it lasts, run `python -m include.access sync-roles`)")
    if p.role == STORE_MANAGER and p.store_id is None:
        raise Forbidden(f"user {uid} is a store_manager without a store: `stores assign-manager STORE {uid}`")
    if p.role == REGIONAL_COORDINATOR and p.region_id is None:
        raise Forbidden(f"user {uid} is a regional_coordinator without a region")
    return p


def context(p: Principal) -> AppContext:
    """The row-level-security context of the caller's requests."""
    if p.role == STORE_MANAGER:
        return AppContext.store_manager(p.store_id, user_id=p.user_id)
    if p.role == REGIONAL_COORDINATOR:
        return AppContext.regional_coordinator(p.region_id, user_id=p.user_id)
    return AppContext.admin(user_id=p.user_id)


def require_store(owner: psycopg.Connection, p: Principal, store_id: uuid.UUID) -> dict:
    """The store row if the caller may act on it: 404 when it does not exist, 403 out of scope."""
    row = owner.execute("SELECT id, name, region_id, is_active FROM stores WHERE id = %s", (store_id,)).fetchone()
    if row is None:
        raise Missing(f"store {store_id} does not exist")
    store = dict(zip(("id", "name", "region_id", "is_active"), row))
    if p.role == STORE_MANAGER and store_id != p.store_id:
        raise Forbidden(f"store {store_id} is not yours: you manage store {p.store_id}")
    if p.role == REGIONAL_COORDINATOR and store["region_id"] != p.region_id:
        raise Forbidden(f"store {store_id} is outside your region {p.region_id}")
    return store


def require_region(p: Principal, region_id: uuid.UUID | None, what: str) -> None:
    if p.role == ADMIN:
        return
    if p.role != REGIONAL_COORDINATOR or region_id != p.region_id:
        raise Forbidden(f"{what} is outside your region {p.region_id}")
