"""``stores``: the chain's stores (clients of the federation)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

_COLS = "id, name, location, manager_id, region_id, created_at, updated_at, is_active"


@dataclass(frozen=True)
class Store:
    id: uuid.UUID
    name: str
    location: str | None
    manager_id: uuid.UUID | None
    region_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    is_active: bool


def create_store(conn: psycopg.Connection, name: str, *, location: str | None = None,
                 manager_id: uuid.UUID | None = None, region_id: uuid.UUID | None = None,
                 store_id: uuid.UUID | None = None) -> uuid.UUID:
    store_id = store_id or uuid.uuid4()
    conn.execute("INSERT INTO stores (id, name, location, manager_id, region_id) VALUES (%s, %s, %s, %s, %s)",
                 (store_id, name, location, manager_id, region_id))
    return store_id


def get_store(conn: psycopg.Connection, store_id: uuid.UUID) -> Store | None:
    with conn.cursor(row_factory=class_row(Store)) as cur:
        return cur.execute(f"SELECT {_COLS} FROM stores WHERE id = %s", (store_id,)).fetchone()


def list_stores(conn: psycopg.Connection, *, region_id: uuid.UUID | None = None,
                active_only: bool = True) -> list[Store]:
    with conn.cursor(row_factory=class_row(Store)) as cur:
        return cur.execute(
            f"""SELECT {_COLS} FROM stores
                 WHERE (%(region)s::uuid IS NULL OR region_id = %(region)s::uuid)
                   AND (NOT %(active)s OR is_active)
                 ORDER BY name, id""", {"region": region_id, "active": active_only}).fetchall()


def set_active(conn: psycopg.Connection, store_id: uuid.UUID, active: bool) -> None:
    conn.execute("UPDATE stores SET is_active = %s WHERE id = %s", (active, store_id))
