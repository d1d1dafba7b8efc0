"""API tokens of platform users: login throttling, the session of each issued token, revocation.

* Every token issued by the platform login is an API session (``include.search.live.Sessions``)
  holding its ``jti`` and expiry, so all tokens of a user can be revoked at once (disable, password
  change): their ids go to ``TokenRevocations`` (PostgreSQL + Redis), which every request checks.
* Failed logins are counted in Redis per account and per client IP over a window
  (``api_login_lockout_seconds``); past ``api_login_max_failures`` (4x that per IP) logins are
  refused until the window ends, whatever the password. Each failure is also an activity_logs row.
"""
from __future__ import annotations

import hashlib
import os
import time
import uuid
from datetime import datetime, timezone

import psycopg

from include.search.live import Sessions, TokenRevocations


def namespace() -> str:
    return os.environ.get("PLATFORM_REDIS_NAMESPACE", "platform")


def _key(ns: str, kind: str, value: str) -> str:
    return f"{ns}:login_failures:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


class LoginThrottle:
    """Counts failed logins per account and per IP; :meth:`retry_after` says how long to refuse."""

    def __init__(self, r, *, max_failures: int, window_s: int, ns: str | None = None):
        self.r, self.max, self.window, self.ns = r, max_failures, window_s, ns or namespace()

    def _keys(self, account: str, ip: str | None) -> list[tuple[str, int]]:
        keys = [(_key(self.ns, "account", account.strip().lower()), self.max)]
        if ip:
            keys.append((_key(self.ns, "ip", ip), 4 * self.max))
        return keys

    def retry_after(self, account: str, ip: str | None) -> int:
        """Seconds until a login may be tried again (0: now)."""
        wait = 0
        for key, limit in self._keys(account, ip):
            if int(self.r.get(key) or 0) >= limit:
                wait = max(wait, int(self.r.ttl(key)), 1)
        return wait

    def failed(self, account: str, ip: str | None) -> int:
        """Count a failure; returns the account's failures in the window."""
        counts = []
        for key, _ in self._keys(account, ip):
            p = self.r.pipeline()
            p.incr(key)
            p.expire(key, self.window, nx=True)
            counts.append(p.execute()[0])
        return counts[0]

    def succeeded(self, account: str) -> None:
        self.r.delete(_key(self.ns, "account", account.strip().lower()))


def record_token(r, user_id, claims: dict, *, ip: str | None = None, ns: str | None = None) -> str:
    """Register an issued token as a session of the user (for revocation); returns the session id."""
    ttl = max(int(claims["exp"] - time.time()), 1)
    return Sessions(r, ns=ns or namespace()).create(
        user_id, {"jti": claims["jti"], "exp": int(claims["exp"]), "ip": ip or ""}, ttl_s=ttl)


def is_revoked(conn: psycopg.Connection, r, jti: str, *, ns: str | None = None) -> bool:
    return TokenRevocations(r, ns=ns or namespace()).is_revoked(conn, jti)


def revoke(conn: psycopg.Connection, r, jti: str, exp: int, *, user_id=None, reason: str,
           ns: str | None = None) -> None:
    """Revoke one token until its expiry (the caller commits ``conn``)."""
    TokenRevocations(r, ns=ns or namespace()).revoke(
        conn, jti, datetime.fromtimestamp(int(exp), tz=timezone.utc), user_id=user_id, reason=reason)


def revoke_user_tokens(conn: psycopg.Connection, r, user_id: uuid.UUID, *, reason: str,
                       ns: str | None = None) -> list[tuple[str, int]]:
    """Revoke every token the platform issued to the user and end their sessions; the (jti, exp) of each
    revoked token (for Airflow's own revocation list: airflow_sync.revoke_in_airflow). The caller commits
    ``conn``."""
    ns = ns or namespace()
    sessions = Sessions(r, ns=ns)
    out = []
    for sid in r.smembers(f"{ns}:user_sessions:{user_id}"):
        data = sessions.get(sid, touch=False)
        if data and data.get("jti") and data.get("exp"):
            revoke(conn, r, data["jti"], int(data["exp"]), user_id=user_id, reason=reason, ns=ns)
            out.append((data["jti"], int(data["exp"])))
    sessions.end_user(user_id)
    return out
