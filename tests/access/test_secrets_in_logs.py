"""No key reaches a log: after the API tests ran (logins, uploads, refusals, fuzzing), the api-server's
output, the activity_logs rows and the Redis keys of the run hold no key of the stack (tests/secretscan.py:
Airflow's JWT, Fernet and session keys, the column-encryption keys, the blind-index key, the privacy HMAC key,
database passwords, pgBackRest's passphrases) and no user's password, in plain, hex or base64 form."""
from __future__ import annotations

import psycopg

from include.search.clients import redis_client
from tests.access.conftest import PASSWORD
from tests.secretscan import leaks, stack_secrets


def test_no_secret_in_logs_audit_rows_or_redis(api, api_login_role, world, redis_ns):
    api.call("GET", "/me", api.token(world, "admin"))
    assert api.login(world.emails["admin"], "a wrong password").status_code == 401
    haystacks = {"api-server log": api.log.read_text(errors="replace")}
    with psycopg.connect(world.dsn) as c:
        haystacks["activity_logs"] = "\n".join(
            f"{d} {a} {u}" for d, a, u in c.execute(
                "SELECT action_description, additional_data::text, user_agent FROM activity_logs"))
    r = redis_client()
    haystacks["redis"] = "\n".join(f"{k} {r.dump(k)!r}" for k in r.scan_iter(f"{redis_ns}:*"))
    assert "/platform/v1/auth/token" in haystacks["api-server log"] and "api_login" in haystacks["activity_logs"]
    found = leaks(stack_secrets(**{"api-server's jwt signing key": api.jwt_secret,
                                   "test login password": api_login_role[1],
                                   "user password": PASSWORD}), haystacks)
    assert not found, f"secrets found in logs: {found}"
