"""pgBackRest configured from connection ``platform_backup`` (call inside tasks only)."""
from __future__ import annotations


def pgbackrest():
    """A :class:`include.retain.pgbackrest.PgBackRest` with the settings of connection platform_backup."""
    from airflow.sdk import BaseHook

    from include.retain.pgbackrest import BACKUP_CONN, BackupSettings, PgBackRest

    return PgBackRest(BackupSettings.from_extra(BaseHook.get_connection(BACKUP_CONN).extra_dejson))
