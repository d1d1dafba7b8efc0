"""Keeps Airflow's FAB auth manager in step with the platform's users (the only module of
``include.access`` that touches Airflow; it imports FAB inside the functions).

* Roles ``store_manager``, ``regional_coordinator``, ``admin`` get exactly the permissions of
  :mod:`include.access.permissions`: ``ROLE_PERMISSIONS`` (the platform API), ``UI_PERMISSIONS`` and
  ``AIRFLOW_PERMISSIONS`` (Airflow's own pages); created when missing, extra ones removed.
* Each platform user has one FAB user: username = the platform user id, one role = its role,
  active = ``users.is_active``, email ``<id>@users.platform.invalid`` (no address in Airflow's
  database) and a random password nobody knows: tokens come only from the platform login, which
  checks the argon2id hash, throttles failures and maintains ``last_login``.
"""
from __future__ import annotations

import secrets
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from include.access.permissions import AIRFLOW_PERMISSIONS, ROLE_PERMISSIONS, UI_PERMISSIONS

EMAIL_DOMAIN = "users.platform.invalid"


@dataclass(frozen=True)
class FabUser:
    user_id: uuid.UUID
    role: str
    is_active: bool


@contextmanager
def _appbuilder():
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as ab:
        yield ab


def sync_roles() -> dict[str, int]:
    """Create the platform roles and set their permissions to the table; {role: permissions}."""
    out = {}
    with _appbuilder() as ab:
        sm = ab.sm
        for name, perms in ROLE_PERMISSIONS.items():
            role = sm.add_role(name)
            # FAB gives every custom role "can read Website" (the UI home) whenever it starts: kept, so a
            # second sync changes nothing
            wanted = {sm.create_permission(action, resource)
                      for action, resource in sorted(perms | UI_PERMISSIONS | AIRFLOW_PERMISSIONS[name])}
            for perm in wanted:
                sm.add_permission_to_role(role, perm)
            for perm in list(role.permissions):
                if perm not in wanted:
                    sm.remove_permission_from_role(role, perm)
            out[name] = len(perms)    # the platform permissions (UI_/AIRFLOW_PERMISSIONS not counted)
    return out


def sync_users(users: list[FabUser]) -> int:
    """Create or update the FAB user of each platform user; returns how many changed."""
    changed = 0
    with _appbuilder() as ab:
        sm = ab.sm
        roles = {name: sm.find_role(name) for name in ROLE_PERMISSIONS}
        missing = [n for n, r in roles.items() if r is None]
        if missing:
            raise RuntimeError(f"FAB roles {missing} are missing: run `python -m include.access sync-roles`")
        for u in users:
            name = str(u.user_id)
            fab = sm.find_user(username=name)
            if fab is None:
                fab = sm.add_user(name, u.role, "platform", f"{name}@{EMAIL_DOMAIN}", roles[u.role],
                                  password=secrets.token_urlsafe(32))
                if not u.is_active:
                    fab.active = False
                    sm.update_user(fab)
                changed += 1
            elif [r.name for r in fab.roles] != [u.role] or bool(fab.active) != u.is_active:
                fab.roles = [roles[u.role]]
                fab.active = u.is_active
                if not sm.update_user(fab):
                    raise RuntimeError(f"could not update the Airflow user of {name}")
                changed += 1
    return changed


def revoke_in_airflow(revoked: list[tuple[str, int]]) -> int:
    """Put revoked platform tokens ((jti, exp) pairs) on Airflow's own revocation list too, so Airflow's
    token check refuses them everywhere (its REST API and UI, not only the platform's routes, which also
    check the platform's list). Idempotent; returns how many."""
    from datetime import datetime, timezone

    from airflow.models.revoked_token import RevokedToken
    from airflow.utils.session import create_session

    with create_session() as session:
        for jti, exp in revoked:
            RevokedToken.revoke(jti, datetime.fromtimestamp(int(exp), tz=timezone.utc), session=session)
    return len(revoked)


def delete_users(user_ids) -> int:
    """Remove the FAB users of these platform users (tests, deleted accounts)."""
    n = 0
    with _appbuilder() as ab:
        for uid in user_ids:
            fab = ab.sm.find_user(username=str(uid))
            if fab is not None:
                ab.sm.session.delete(fab)
                n += 1
        ab.sm.session.commit()
    return n


def platform_users(conn) -> list[FabUser]:
    """Every platform user, as the FAB side should see it."""
    return [FabUser(uid, role, bool(active))
            for uid, role, active in conn.execute("SELECT id, role, is_active FROM users ORDER BY id")]
