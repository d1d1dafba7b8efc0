"""No key reaches a log: after the API tests ran (logins, uploads, refusals, fuzzing), the api-server's
output, the activity_logs rows and the Redis keys of the run hold none of the JWT signing key, the
column-encryption keys, the blind-index key, Airflow's Fernet and session keys, the privacy HMAC key, the API's database password or a
user's password (each also looked for in hex and base64 forms)."""
from __future__ import annotations

import base64
import json
import os
import shlex
from pathlib import Path

import psycopg

from include.search.clients import redis_client
from tests.access.conftest import PASSWORD


def _secrets(api, api_login) -> dict[str, str]:
    enc = json.loads(os.environ["AIRFLOW_CONN_PLATFORM_ENCRYPTION"])["extra"]
    out = {"jwt signing key": api.jwt_secret, "api database password": api_login[1], "user password": PASSWORD,
           "index key": enc["index_key"],
           "privacy hmac key": json.loads(os.environ["AIRFLOW_CONN_PLATFORM_PRIVACY_HMAC"])["password"]}
    out.update({f"encryption key {kid}": key for kid, key in enc["keys"].items()})
    for option in ("CORE__FERNET_KEY", "API__SECRET_KEY"):  # Airflow's other keys (their _CMD: .local/secrets)
        out[f"airflow {option.lower()}"] = Path(shlex.split(os.environ[f"AIRFLOW__{option}_CMD"])[1]).read_text()
    for name, value in list(out.items()):
        try:
            raw = base64.b64decode(value, validate=True)
            if len(raw) >= 16:
                out[f"{name} (hex)"] = raw.hex()
        except ValueError:
            pass
        out[f"{name} (base64)"] = base64.b64encode(value.encode()).decode().rstrip("=")
    return out


def test_no_secret_in_logs_audit_rows_or_redis(api, api_login, world, redis_ns):
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
    found = [(name, where) for name, secret in _secrets(api, api_login).items()
             for where, text in haystacks.items() if secret and secret in text]
    assert not found, f"secrets found in logs: {found}"
