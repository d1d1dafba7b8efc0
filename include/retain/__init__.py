"""Retention, archival and backups (spec 4.1, 4.2; issue 10). No Airflow imports here.

- :mod:`include.retain.policy`     the retention periods (server_configs) and the cutoffs of a run
- :mod:`include.retain.run`        one retention run over every table, or its dry-run plan
- :mod:`include.retain.archive`    Parquet archive with manifests, read-back check, crash-safe delete;
                                   ``restore_archive``
- :mod:`include.retain.parquet`    exact PostgreSQL <-> Parquet (zstd) conversion
- :mod:`include.retain.pgbackrest` pgBackRest backup/info/expire/check/restore and the info JSON helpers
- :mod:`include.retain.drill`      restore points and the point-in-time restore drill
- ``python -m include.retain``     the command line (docs/retain.md)
"""
