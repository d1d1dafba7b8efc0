"""Dashboards in Airflow's UI (issue 13, docs/dashboards.md): rounds, privacy budget, ingestion and mining
pages as iframe views in the nav, a "Rounds" tab on DAG and DAG-run pages, served with their JSON by the
FastAPI app of the package ``platform_ui`` (ignored as plugins by .airflowignore)."""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from platform_ui.app import app

CATEGORY = "Platform"


def _nav(name: str, page: str) -> dict:
    return {"name": name, "href": f"dashboards/{page}", "destination": "nav", "category": CATEGORY,
            "url_route": f"platform-{page}"}


class PlatformUiPlugin(AirflowPlugin):
    name = "platform_ui"
    fastapi_apps = [{"app": app, "url_prefix": "/dashboards", "name": "Platform dashboards"}]
    external_views = [
        _nav("Rounds", "rounds"),
        _nav("Privacy budget", "privacy"),
        _nav("Ingestion", "ingestion"),
        _nav("Mining", "mining"),
        {"name": "Rounds", "href": "dashboards/rounds?dag_id={DAG_ID}", "destination": "dag",
         "url_route": "platform-dag-rounds"},
        {"name": "Round", "href": "dashboards/round?dag_run_id={RUN_ID}", "destination": "dag_run",
         "url_route": "platform-run-round"},
    ]
    # the Home page widget: a no-build ES module using the UI's React (globalThis.React)
    react_apps = [{"name": "PlatformWidget", "bundle_url": "dashboards/static/widget.js", "destination": "dashboard",
                   "url_route": "platform-widget"}]
