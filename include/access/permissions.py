"""The permission table of the platform: which role may do what, as FAB (action, resource) pairs.

One source for both sides: ``python -m include.access sync-roles`` creates exactly these permissions
on the FAB roles, and every platform API route declares the one pair it needs (checked with
``is_authorized_custom_view``). The *scope* (own store, own region) is checked separately, per request,
by :mod:`include.access.principal` and again by row-level security.
"""
from __future__ import annotations

READ, CREATE, EDIT = "can_read", "can_create", "can_edit"
METHOD = {READ: "GET", CREATE: "POST", EDIT: "PUT"}  # FAB maps these methods back to the actions

FILES = "Platform Files"                    # upload, list files, rejects
MINING = "Platform Mining"                  # request mining runs, list jobs
LOCAL_PATTERNS = "Platform Local Patterns"  # a store's own patterns
PRIVACY = "Platform Privacy"                # a store's privacy config and budget ledger
STORES = "Platform Stores"                  # store metadata (never transactions)
ROUNDS = "Platform Rounds"                  # federated rounds: start, read
GLOBAL_PATTERNS = "Platform Global Patterns"
CONFIGS = "Platform Configs"                # server_configs
RESOURCES = (FILES, MINING, LOCAL_PATTERNS, PRIVACY, STORES, ROUNDS, GLOBAL_PATTERNS, CONFIGS)

STORE_MANAGER, REGIONAL_COORDINATOR, ADMIN = "store_manager", "regional_coordinator", "admin"
ROLES = (STORE_MANAGER, REGIONAL_COORDINATOR, ADMIN)

ROLE_PERMISSIONS: dict[str, frozenset[tuple[str, str]]] = {
    STORE_MANAGER: frozenset({
        (READ, FILES), (CREATE, FILES), (READ, MINING), (CREATE, MINING), (READ, LOCAL_PATTERNS),
        (READ, PRIVACY), (READ, STORES)}),
    REGIONAL_COORDINATOR: frozenset({
        (READ, STORES), (READ, ROUNDS), (CREATE, ROUNDS), (READ, GLOBAL_PATTERNS)}),
    ADMIN: frozenset({
        (READ, FILES), (CREATE, FILES), (READ, MINING), (CREATE, MINING), (READ, LOCAL_PATTERNS),
        (READ, PRIVACY), (READ, STORES), (READ, ROUNDS), (CREATE, ROUNDS), (READ, GLOBAL_PATTERNS),
        (READ, CONFIGS), (EDIT, CONFIGS)}),
}


# what every platform role needs of Airflow's own UI: the UI itself, and the plugins' menu entries, DAG/run
# tabs and Home widget of the dashboards (plugins/platform_ui; Airflow shows them to roles reading "Plugins")
UI_PERMISSIONS = frozenset({(READ, "Website"), (READ, "Plugins")})

# Airflow's own resources (FAB names) per platform role, for the pages around the dashboards' DAG and
# DAG-run tabs and Airflow's Home. The admin operates the DAGs there (read, trigger, clear, pause), as
# Airflow's "Op" role does, without connections, variables' values, configuration or user management
# (users and roles are managed by `python -m include.access`, which keeps FAB in step). Coordinators and
# store managers get none: Airflow's DAG permissions cannot filter runs by region or store, and a
# federated_round run's conf names the stores it invited (spec 2.1: a coordinator reads only their
# region's stores, a store manager only their store); they start and read rounds through the platform API
# and the dashboards, which are scoped (docs/access.md).
DELETE = "can_delete"
AIRFLOW_PERMISSIONS: dict[str, frozenset[tuple[str, str]]] = {
    STORE_MANAGER: frozenset(),
    REGIONAL_COORDINATOR: frozenset(),
    ADMIN: frozenset(
        {(a, "DAGs") for a in (READ, EDIT, DELETE)}
        | {(a, r) for r in ("DAG Runs", "Task Instances") for a in (READ, CREATE, EDIT, DELETE)}
        | {(a, "Backfills") for a in (READ, CREATE, EDIT)}
        | {(READ, r) for r in ("Task Logs", "XComs", "DAG Code", "DAG Dependencies", "DAG Versions", "DAG Warnings",
                               "Task Reschedules", "Assets", "Asset Aliases", "Audit Logs", "ImportError", "Jobs",
                               "Pools", "Providers", "Cluster Activity", "Triggers", "HITL Detail", "Documentation")}),
}


def allowed(role: str, action: str, resource: str) -> bool:
    return (action, resource) in ROLE_PERMISSIONS.get(role, frozenset())
