"""Dashboard queries (issue 13): rounds, privacy budget, ingestion and mining, as functions over a
psycopg connection. No Airflow imports; the plugin ``plugins/platform_ui`` serves them as JSON.

Contract of every function:

* ``scope`` (:class:`Scope`) is the caller's reach, decided by the caller (the plugin derives it from the
  platform principal): a store manager's ``store_id``, a coordinator's ``region_id``, nothing for an
  admin. Every query filters by it, so a function never returns rows outside it, whatever RLS allows.
  Run them on a connection scoped to the same caller (RLS repeats the rule: defense in depth).
* Lists are paged on the server: ``limit``/``offset`` in, :class:`Page` (``total``, ``items``) out.
* Results are JSON-ready (UUIDs and datetimes are serialised by the web layer; decimals are floats).
* Unknown ids raise :class:`NotFound`; ids outside the scope raise :class:`NotFound` too (the caller
  decides whether to answer 403 before calling). Bad parameters raise :class:`Invalid`.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

MAX_LIMIT = 500


class NotFound(LookupError):
    """The requested round/store/pattern does not exist within the scope."""


class Invalid(ValueError):
    """A parameter is out of range; the message names it."""


@dataclass(frozen=True)
class Scope:
    """Whose data: one store (store manager), one region (coordinator), or all (admin: both None).
    A store within a region may be given too (an admin or coordinator drilling down)."""

    store_id: uuid.UUID | None = None
    region_id: uuid.UUID | None = None

    def params(self) -> dict[str, Any]:
        return {"scope_store": self.store_id, "scope_region": self.region_id}


# SQL predicate on a stores alias ``s`` for the scope (parameters from Scope.params()).
STORE_IN_SCOPE = ("(%(scope_store)s::uuid IS NULL OR s.id = %(scope_store)s::uuid) AND "
                  "(%(scope_region)s::uuid IS NULL OR s.region_id = %(scope_region)s::uuid)")


@dataclass
class Page:
    total: int
    limit: int
    offset: int
    items: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"total": self.total, "limit": self.limit, "offset": self.offset, "items": self.items}


def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise Invalid(f"offset must be >= 0, got {offset}")


def _value(v):
    return float(v) if isinstance(v, Decimal) else v


def rows(cur) -> list[dict]:
    cols = [d.name for d in cur.description]
    return [{k: _value(v) for k, v in zip(cols, r)} for r in cur.fetchall()]
