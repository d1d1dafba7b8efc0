"""The platform API (issue 12), served by Airflow's api-server under /platform/v1 (docs/access.md).
The package ``platform_api`` next to this file holds the app; .airflowignore keeps Airflow from
importing its modules as plugins of their own."""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from platform_api.app import app


class PlatformApiPlugin(AirflowPlugin):
    name = "platform_api"
    fastapi_apps = [{"app": app, "url_prefix": "/platform/v1", "name": "Platform API"}]
