"""An OpenAPI-driven fuzz run (schemathesis, its CLI) against the real api-server finds no 500: for an
admin (every route reachable) and a store manager, and for the login (its throttle raised meanwhile, its
counters removed afterwards, so the client's IP is not locked for the other tests). Logout is left out:
it would revoke the token the run uses; test_tokens covers it."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests import tlsmode

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
# TLS mode (docs/tls.md): the api-server is https with the project CA
TLS_ARGS = ["--tls-verify", tlsmode.ca_file()] if tlsmode.ca_file() else []


@pytest.mark.slow
@pytest.mark.parametrize("who,real_ids", [("admin", True), ("sm_a", False)])
def test_fuzzing_finds_no_server_error(api, world, who, real_ids, tmp_path):
    """admin: path ids fixed to existing rows (so bodies and queries reach the logic); store manager:
    generated ids (scope and existence checks)."""
    token = api.token(world, who)
    config = tmp_path / "schemathesis.toml"
    params = (f'"path.store_id" = "{world.stores["a"]}"\n"path.file_id" = "{world.files["a"]}"\n'
              f'"path.round_id" = "{world.rounds["r1"]}"\n') if real_ids else ""
    config.write_text("[parameters]\n" + params)
    run = subprocess.run(
        [SCHEMATHESIS, "--config-file", str(config), "run", api.url("/openapi.json"), "--url", api.url(""),
         "--checks", "not_a_server_error", "--phases", "examples,coverage,fuzzing",
         "--max-examples", "25", "--seed", "12", "--request-timeout", "60",
         "--exclude-path-regex", "^/auth/", "-H", f"Authorization: Bearer {token}",
         "--suppress-health-check", "all", *TLS_ARGS],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    tail = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert generated and generated.group(1) == generated.group(2) and int(generated.group(1)) > 300, tail
    with psycopg.connect(world.dsn) as c:  # the audit trail agrees: no request ended in a 500
        assert c.execute("""SELECT count(*) FROM activity_logs WHERE action_type LIKE 'api_%'
                              AND additional_data->>'status' = '500'""").fetchone()[0] == 0


def _schemathesis(api, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SCHEMATHESIS, "run", api.url("/openapi.json"), "--url", api.url(""), "--checks", "not_a_server_error",
         "--phases", "examples,coverage,fuzzing", "--seed", "12", "--request-timeout", "60",
         "--suppress-health-check", "all", *TLS_ARGS, *args],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)


@pytest.mark.slow
def test_login_fuzzing_finds_no_server_error(api, world, redis_ns, tmp_path):
    from include.search.clients import redis_client

    with psycopg.connect(world.dsn) as c:
        c.execute("UPDATE server_configs SET config_value = '1000000' WHERE config_key = 'api_login_max_failures'")
    try:
        run = _schemathesis(api, tmp_path, "--include-path-regex", "^/auth/token$", "--max-examples", "40")
    finally:
        with psycopg.connect(world.dsn) as c:
            c.execute("UPDATE server_configs SET config_value = '5' WHERE config_key = 'api_login_max_failures'")
        r = redis_client()
        keys = list(r.scan_iter(f"{redis_ns}:login_failures:*"))
        if keys:
            r.delete(*keys)
    tail = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert generated and generated.group(1) == generated.group(2), tail
