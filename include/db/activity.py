"""``activity_logs`` (spec 2.7): the append-only activity trail. Configuration changes and federated
contributions are logged by database triggers; this module is for everything else the DAGs and the API
do (ingestion runs, mining runs, logins, ...)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def log_activity(conn: psycopg.Connection, action_type: str, action_description: str, *,
                 store_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None,
                 resource_type: str | None = None, resource_id: uuid.UUID | None = None,
                 ip_address: str | None = None, user_agent: str | None = None,
                 additional_data: dict[str, Any] | None = None) -> uuid.UUID:
    """Append one activity row; ``user_id`` defaults to the session's ``app.current_user_id`` if it is a user."""
    return conn.execute(
        """INSERT INTO activity_logs (user_id, store_id, action_type, action_description, resource_type,
                                      resource_id, ip_address, user_agent, additional_data)
           VALUES (COALESCE(%s, app_current_user_if_exists()), %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (user_id, store_id, action_type, action_description, resource_type, resource_id, ip_address, user_agent,
         Jsonb(additional_data) if additional_data is not None else None)).fetchone()[0]


def recent_activity(conn: psycopg.Connection, *, action_type: str | None = None, resource_type: str | None = None,
                    resource_id: uuid.UUID | None = None, store_id: uuid.UUID | None = None,
                    since: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
    cur = conn.execute(
        """SELECT id, user_id, store_id, action_type, action_description, resource_type, resource_id,
                  ip_address, user_agent, created_at, additional_data
             FROM activity_logs
            WHERE (%(a)s::text IS NULL OR action_type = %(a)s::text)
              AND (%(rt)s::text IS NULL OR resource_type = %(rt)s::text)
              AND (%(ri)s::uuid IS NULL OR resource_id = %(ri)s::uuid)
              AND (%(s)s::uuid IS NULL OR store_id = %(s)s::uuid)
              AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
            ORDER BY created_at DESC, id LIMIT %(lim)s""",
        {"a": action_type, "rt": resource_type, "ri": resource_id, "s": store_id, "since": since, "lim": limit})
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]
