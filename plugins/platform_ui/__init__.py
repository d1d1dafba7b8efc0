"""Dashboards plugin (issue 13): pages in Airflow's UI and their JSON endpoints (docs/dashboards.md)."""
