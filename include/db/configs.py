"""``server_configs``: typed platform settings.

Values are stored as text with a ``data_type`` (string | number | boolean | json) and read back typed:
number -> ``Decimal``, boolean -> ``bool``, json -> parsed JSON. Every change is audited by a trigger
(migration 0005), and ``updated_by``/``updated_at`` are maintained by the database.
The spec's six rows default to ``0``, meaning "no platform-wide setting" (see docs/schema.md).
"""
from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg

_MISSING = object()


class ConfigError(KeyError):
    pass


def parse_value(key: str, text: str, data_type: str) -> Any:
    try:
        if data_type == "number":
            return Decimal(text)
        if data_type == "boolean":
            t = text.strip().lower()
            if t in ("true", "t", "1", "yes", "on"):
                return True
            if t in ("false", "f", "0", "no", "off"):
                return False
            raise ValueError(text)
        if data_type == "json":
            return json.loads(text)
        return text
    except (InvalidOperation, ValueError) as e:
        raise ConfigError(f"server_configs.{key}: value {text!r} is not a valid {data_type}") from e


def format_value(value: Any, data_type: str) -> str:
    if data_type == "boolean":
        return "true" if value else "false"
    if data_type == "json":
        return json.dumps(value)
    if data_type == "number":
        return str(Decimal(str(value)))
    return str(value)


def infer_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, (dict, list)):
        return "json"
    return "string"


def get_config(conn: psycopg.Connection, key: str, default: Any = _MISSING) -> Any:
    row = conn.execute("SELECT config_value, data_type FROM server_configs WHERE config_key = %s", (key,)).fetchone()
    if row is None:
        if default is _MISSING:
            raise ConfigError(f"server_configs has no key {key!r}")
        return default
    return parse_value(key, row[0], row[1])


def get_configs(conn: psycopg.Connection) -> dict[str, Any]:
    rows = conn.execute("SELECT config_key, config_value, data_type FROM server_configs ORDER BY config_key").fetchall()
    return {k: parse_value(k, v, t) for k, v, t in rows}


def set_config(conn: psycopg.Connection, key: str, value: Any, *, data_type: str | None = None,
               description: str | None = None) -> None:
    """Insert or update a setting (the acting user comes from the session context, for the audit)."""
    data_type = data_type or infer_type(value)
    text = format_value(value, data_type)
    parse_value(key, text, data_type)
    conn.execute(
        """INSERT INTO server_configs (config_key, config_value, data_type, description)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (config_key) DO UPDATE
              SET config_value = EXCLUDED.config_value, data_type = EXCLUDED.data_type,
                  description = COALESCE(EXCLUDED.description, server_configs.description)""",
        (key, text, data_type, description))
