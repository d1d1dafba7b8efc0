"""`./dev ui` (scripts/ui.py): Airflow's api-server, scheduler, dag-processor and triggerer under the FAB auth
manager, with the platform admin of the UI made on first start. Checked on a port and database of the test's
own: every component reports healthy, the UI admin signs in through the platform login and reads the
dashboards and Airflow's DAG pages, a second start keeps its password, and Ctrl-C stops everything (exit 0)."""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import psycopg
import requests

from tests import tlsmode
from tests.apiserver import free_port
from tests.tlsmode import pg_conn_json

ROOT = Path(__file__).resolve().parents[2]
EMAIL = "admin@platform.localhost"


def _health(base: str) -> dict | None:
    try:
        r = requests.get(f"{base}/api/v2/monitor/health", timeout=5, verify=tlsmode.http_verify())
        return r.json() if r.ok else None
    except requests.RequestException:
        return None


def _start(env: dict, tmp_path: Path, pw_file: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "ui.py"), "--logs", str(tmp_path / "logs"),
                             "--password-file", str(pw_file)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_healthy(proc: subprocess.Popen, base: str, tmp_path: Path, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        h = _health(base)
        if h and all(h.get(c, {}).get("status") == "healthy"
                     for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")):
            return h
        logs = {p.name: p.read_text(errors="replace")[-1500:] for p in (tmp_path / "logs").glob("*.log")}
        assert proc.poll() is None, f"scripts/ui.py exited {proc.returncode}: {proc.stdout.read()}\n{logs}"
        assert time.monotonic() < deadline, f"not healthy after {timeout:.0f} s: {h}\n{logs}"
        time.sleep(2)


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, out


def test_dev_ui_runs_every_component_and_the_platform_admin_signs_in(temporary_database, redis_namespace, tmp_path):
    from include.access import airflow_sync

    port = free_port()
    base = tlsmode.api_base_url(port)
    pw_file = tmp_path / "secrets" / "ui-admin.pass"
    with temporary_database("t_uicmd") as dsn:
        env = {**os.environ, "AIRFLOW_CONN_PLATFORM_POSTGRES": pg_conn_json(dsn),
               "PLATFORM_REDIS_NAMESPACE": redis_namespace("t-uicmd"), **tlsmode.api_server_env(port)}
        env.pop("OPENSSL_CONF", None)   # scripts/ui.py sets it for the api-server alone (TLS mode)
        uid = None
        try:
            proc = _start(env, tmp_path, pw_file)
            try:
                _wait_healthy(proc, base, tmp_path)
                assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
                password = pw_file.read_text()
                with psycopg.connect(dsn) as c:
                    (uid, role), = c.execute("SELECT id, role FROM users").fetchall()
                assert role == "admin"
                r = requests.post(f"{base}/platform/v1/auth/token", json={"email": EMAIL, "password": password},
                                  timeout=60, verify=tlsmode.http_verify())
                assert r.status_code == 201, r.text
                auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
                for path, key in (("/dashboards/api/me", "role"), ("/api/v2/dags/federated_round", "dag_id")):
                    r = requests.get(f"{base}{path}", headers=auth, timeout=60, verify=tlsmode.http_verify())
                    assert r.status_code == 200 and key in r.json(), (path, r.status_code, r.text[:300])
                # the FAB auth manager (its login page), not the simple one airflow standalone forces
                r = requests.get(f"{base}/auth/login/", timeout=60, verify=tlsmode.http_verify())
                assert r.status_code == 200 and "simple" not in r.url
            finally:
                rc, out = _stop(proc)
            assert rc == 0, out
            assert "[ui] stopped" in out and str(pw_file) in out and password not in out
            with socket.socket() as s:   # the api-server is gone
                assert s.connect_ex(("127.0.0.1", port)) != 0
            for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
                assert (tmp_path / "logs" / f"ui-{name}.log").stat().st_size > 0, name
            # a second start keeps the admin and its password; a component that dies stops the others (exit 1)
            proc = _start(env, tmp_path, pw_file)
            try:
                _wait_healthy(proc, base, tmp_path)
                assert pw_file.read_text() == password
                with psycopg.connect(dsn) as c:
                    assert c.execute("SELECT count(*) FROM users").fetchone()[0] == 1
                children = {" ".join(c.cmdline()[1:3]): c for c in psutil.Process(proc.pid).children()}
                scheduler = next(c for cmd, c in children.items() if cmd.endswith("scheduler"))
                os.killpg(scheduler.pid, signal.SIGKILL)
                out, _ = proc.communicate(timeout=120)
            finally:
                if proc.poll() is None:
                    _stop(proc)
            assert proc.returncode == 1 and "scheduler exited" in out and "[ui] stopped" in out, out
            gone, alive = psutil.wait_procs(list(children.values()), timeout=30)
            assert not alive, [c.cmdline() for c in alive]
        finally:
            if uid is not None:
                airflow_sync.delete_users([uuid.UUID(str(uid))])
