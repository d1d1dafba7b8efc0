"""Tokens and logins against the real api-server: expired, tampered, alg:none and foreign-key tokens are
refused; logout, disabling a user and a password change stop their tokens; failed logins are throttled;
last_login is maintained; every login attempt is audited."""
from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import psycopg
import requests

from tests import tlsmode
from tests.access.conftest import PASSWORD


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _b64(d: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def _new_user(api, world, role="store_manager", **kw) -> tuple[str, uuid.UUID]:
    """A fresh user (own email) added with the real command, FAB user included."""
    email = f"u-{uuid.uuid4().hex[:8]}@t-access.example"
    args = ["users", "add", email, "--role", role, "--password-stdin"]
    if role == "store_manager":
        store = kw.get("store") or _new_store(api, world)
        args += ["--store", str(store)]
    r = api.cli(*args, stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    return email, uuid.UUID(json.loads(r.stdout)["user_id"])


def _new_store(api, world) -> uuid.UUID:
    r = api.cli("stores", "add", f"t-access-{uuid.uuid4().hex[:6]}", "--region", str(world.r1))
    assert r.returncode == 0, r.stderr
    sid = uuid.UUID(json.loads(r.stdout)["store_id"])
    world.stores[f"extra-{sid}"] = sid  # its S3 objects are removed with the others
    return sid


def test_expired_tampered_none_and_foreign_tokens_are_refused(api, world):
    good = api.token(world, "sm_a")
    c = _claims(good)
    now = int(time.time())
    expired = jwt.encode({**c, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, api.jwt_secret,
                         algorithm="HS512")
    head, body, sig = good.split(".")
    tampered = ".".join([head, _b64({**c, "sub": str(int(c["sub"]) + 1)}), sig])
    alg_none = ".".join([_b64({"alg": "none", "typ": "JWT"}), _b64({**c, "exp": now + 3600}), ""])
    foreign = jwt.encode({**c, "exp": now + 3600}, "another-secret-of-sufficient-length-0123456789", algorithm="HS512")
    assert api.call("GET", "/me", good).status_code == 200
    r = api.call("GET", "/me", expired)
    assert (r.status_code, r.json()["detail"]) == (401, "Token Expired")
    for bad in (tampered, alg_none, foreign, "not-a-jwt"):
        r = api.call("GET", "/me", bad)
        assert (r.status_code, r.json()["detail"]) == (403, "Invalid JWT token"), bad
    # the same through the _token cookie
    r = api.call("GET", "/me", None, cookies={"_token": alg_none})
    assert r.status_code == 403


def test_logout_revokes_the_token(api, world):
    token = api.login(world.emails["coord_r1"]).json()["access_token"]
    assert api.call("GET", "/me", token).status_code == 200
    assert api.call("POST", "/auth/logout", token).status_code == 200
    # on Airflow's own revocation list: Airflow's token check refuses it first, on the platform's routes and
    # on Airflow's REST API alike; the platform's list (checked behind it) has it too
    r = api.call("GET", "/me", token)
    assert (r.status_code, r.json()["detail"]) == (403, "Invalid JWT token"), r.text
    r = requests.get(f"{api.base}/api/v2/dags", headers={"Authorization": f"Bearer {token}"}, timeout=60,
                     verify=tlsmode.http_verify())
    assert r.status_code == 403, r.text
    from airflow.models.revoked_token import RevokedToken

    assert RevokedToken.is_revoked(_claims(token)["jti"])
    with psycopg.connect(world.dsn) as c:
        assert c.execute("SELECT reason FROM token_revocations WHERE jti = %s",
                         (_claims(token)["jti"],)).fetchone() == ("logout",)


def test_disabled_user_token_stops_working_and_login_is_refused(api, world):
    email, uid = _new_user(api, world)
    token = api.login(email).json()["access_token"]
    assert api.call("GET", "/me", token).json()["user_id"] == str(uid)
    r = api.cli("users", "disable", email)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["tokens_revoked"] == 1 and out["airflow_users_changed"] == 1 and out["airflow_tokens_revoked"] == 1
    # refused by whichever check sees it first: the revocation / platform user (401), or Airflow's FAB
    # user, now inactive, once its cached copy expired (403 "Invalid JWT token")
    r = api.call("GET", "/me", token)
    assert r.status_code in (401, 403), r.text
    assert api.login(email).status_code == 401
    # enabled again: a new login works, the old token stays revoked
    assert api.cli("users", "enable", email).returncode == 0
    assert api.call("GET", "/me", api.login(email).json()["access_token"]).status_code == 200
    r = api.call("GET", "/me", token)   # on Airflow's revocation list (the CLI put it there)
    assert (r.status_code, r.json()["detail"]) == (403, "Invalid JWT token"), r.text


def test_password_change_ends_tokens_and_last_login_is_kept(api, world):
    email, uid = _new_user(api, world)
    with psycopg.connect(world.dsn) as c:
        assert c.execute("SELECT last_login FROM users WHERE id = %s", (uid,)).fetchone()[0] is None
    token = api.login(email).json()["access_token"]
    with psycopg.connect(world.dsn) as c:
        assert c.execute("SELECT last_login FROM users WHERE id = %s", (uid,)).fetchone()[0] is not None
    r = api.cli("users", "set-password", email, "--password-stdin", "--no-airflow", stdin="another long password\n")
    assert r.returncode == 0, r.stderr
    assert api.call("GET", "/me", token).status_code == 401
    assert api.login(email).status_code == 401
    assert api.login(email, "another long password").status_code == 201


def test_login_is_throttled_after_repeated_failures(api, world):
    email, uid = _new_user(api, world)
    for i in range(5):  # api_login_max_failures
        r = api.login(email, f"wrong password {i}")
        assert r.status_code == 401, r.text
    r = api.login(email)  # the right password, but too late
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, r.text
    assert "too many failed logins" in r.json()["detail"]
    with psycopg.connect(world.dsn) as c:
        rows = c.execute("""SELECT additional_data->>'status', count(*) FROM activity_logs
                             WHERE action_type = 'api_login' AND created_at > now() - interval '5 minutes'
                               AND additional_data->>'status' IN ('401', '429') GROUP BY 1""").fetchall()
    assert dict(rows).get("429", 0) >= 1 and dict(rows).get("401", 0) >= 5
    # another account from the same client is not locked by this one
    assert api.login(world.emails["admin"]).status_code == 201


def test_role_change_is_followed_by_airflow(api, world):
    email, uid = _new_user(api, world)
    token = api.login(email).json()["access_token"]
    assert api.call("GET", "/rounds", token).status_code == 403
    r = api.cli("users", "set-role", email, "regional_coordinator", "--region", str(world.r1))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["tokens_revoked"] == 1 and out["airflow_tokens_revoked"] == 1   # role change revokes the tokens
    r = api.call("GET", "/me", token)
    assert (r.status_code, r.json()["detail"]) == (403, "Invalid JWT token"), r.text
    token = api.login(email).json()["access_token"]
    me = api.call("GET", "/me", token).json()
    assert (me["role"], me["region_id"]) == ("regional_coordinator", str(world.r1))
    assert api.call("GET", "/rounds", token).status_code == 200
