"""The platform roles in Airflow's own UI and REST API (include/access/permissions.py): after ``sync-roles``
each FAB role holds exactly its table's permissions, and the real api-server lets the platform admin read the
DAG and DAG-run pages around the dashboards' tabs while coordinators and store managers are refused there
(Airflow cannot scope runs to a region or store; they use the scoped platform API and dashboards)."""
from __future__ import annotations

import pytest
import requests

from include.access.permissions import AIRFLOW_PERMISSIONS, ROLE_PERMISSIONS, ROLES, UI_PERMISSIONS
from tests import tlsmode

AIRFLOW_PAGES = ("/api/v2/dags/federated_round", "/api/v2/dags/federated_round/details",
                 "/api/v2/dags/federated_round/dagRuns", "/api/v2/dags/~/dagRuns/~/taskInstances",
                 "/api/v2/dagWarnings", "/api/v2/dags", "/ui/backfills?dag_id=federated_round")


def test_each_fab_role_holds_exactly_its_permissions(fab_users):
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as ab:
        for name in ROLES:
            held = {(p.action.name, p.resource.name) for p in ab.sm.find_role(name).permissions}
            assert held == ROLE_PERMISSIONS[name] | UI_PERMISSIONS | AIRFLOW_PERMISSIONS[name], name
    assert not AIRFLOW_PERMISSIONS["store_manager"] and not AIRFLOW_PERMISSIONS["regional_coordinator"]
    assert not {r for _, r in AIRFLOW_PERMISSIONS["admin"]} & {"Connections", "Variables", "Configurations",
                                                               "Users", "Roles", "Permissions"}


@pytest.mark.parametrize("path", AIRFLOW_PAGES)
@pytest.mark.parametrize("who,status", [("admin", 200), ("coord_r1", 403), ("sm_a", 403)])
def test_airflow_pages_admin_reads_the_others_are_refused(api, world, who, status, path):
    r = requests.get(f"{api.base}{path}", headers={"Authorization": f"Bearer {api.token(world, who)}"}, timeout=60,
                     verify=tlsmode.http_verify())
    assert r.status_code == status, (who, path, r.status_code, r.text[:300])
    if path == "/api/v2/dags/federated_round" and status == 200:
        assert r.json()["dag_id"] == "federated_round"
