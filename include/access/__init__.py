"""Access for stores and coordinators (issue 12): users and stores with their bindings, the
permission table of the roles, API tokens, and the logic behind the platform API
(``plugins/platform_api``). No Airflow imports here except inside :mod:`include.access.airflow_sync`.
See docs/access.md."""
