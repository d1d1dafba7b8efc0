"""One ``activity_logs`` row per platform API request (spec 5.3: every read and write, refusals too).

``action_type`` is ``api_<operation>`` (e.g. ``api_list_files``), ``action_description`` is
``<METHOD> <path> -> <status>``; ``additional_data`` holds method, path, status, role, the outcome
(``ok`` or the refusal message) and the target store/resource as given. ``store_id``/``user_id`` are
only set when the row exists (a request may name an unknown store). Written on the owner connection,
so a refused request is logged whatever the caller may write.
"""
from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def _uuid(v) -> uuid.UUID | None:
    try:
        return v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)) if v else None
    except ValueError:
        return None


def _ip(v: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(v)) if v else None
    except ValueError:
        return None


def record(conn: psycopg.Connection, *, operation: str, method: str, path: str, status: int,
           user_id=None, store_id=None, resource_type: str | None = None, resource_id=None,
           ip: str | None = None, user_agent: str | None = None, data: dict[str, Any] | None = None) -> None:
    """Append the row (the caller commits)."""
    extra = {"method": method, "path": path, "status": status, "store_id": str(store_id) if store_id else None,
             "resource_id": str(resource_id) if resource_id else None, **(data or {})}
    conn.execute(
        """INSERT INTO activity_logs (user_id, store_id, action_type, action_description, resource_type,
                                      resource_id, ip_address, user_agent, additional_data)
           VALUES ((SELECT id FROM users WHERE id = %s), (SELECT id FROM stores WHERE id = %s), %s, %s, %s, %s,
                   %s, %s, %s)""",
        (_uuid(user_id), _uuid(store_id), f"api_{operation}"[:50], f"{method} {path} -> {status}"[:2000],
         (resource_type or None) and resource_type[:50], _uuid(resource_id), _ip(ip),
         (user_agent or "")[:500] or None, Jsonb(extra)))
