"""`./dev ui`: Airflow's UI with the platform's sign-in and dashboards, plus the components that run DAGs.

Runs ``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` (LocalExecutor) with the
project's settings (``.local/env.sh``: FAB auth manager, connections, TLS mode). Not ``airflow standalone``:
it forces the simple auth manager, whose users are not platform users, so the dashboards and the platform
API would refuse them (docs/access.md).

Before starting, it makes sure the platform admin of the UI exists: email ``admin@platform.localhost``, its
password generated once into ``$STATE/secrets/ui-admin.pass`` (mode 600; never printed). Platform users sign
in at ``/dashboards/login``.

Ctrl-C / SIGTERM stops every component (SIGTERM to each process group, SIGKILL after 30 s) and exits 0.
When a component exits by itself, the others are stopped too and the exit code is 1, naming the component
and its log.

    python scripts/ui.py [--logs DIR] [--password-file FILE]   (the environment of .local/env.sh; ./dev ui
                                                              sets it up)
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from settings import write_secret  # scripts/settings.py (this script's directory is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("PLATFORM_STATE_DIR") or ROOT / ".local")
AIRFLOW = str(Path(sys.executable).parent / "airflow")
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
UI_ADMIN_EMAIL = "admin@platform.localhost"


def say(msg: str) -> None:
    print(f"[ui] {msg}", flush=True)


def ensure_ui_admin(f: Path) -> Path:
    """The platform admin of the UI, its password made once into ``f`` (mode 600)."""
    if f.exists():
        return f
    password = secrets.token_urlsafe(18)
    cli = [sys.executable, "-m", "include.access", "users"]
    r = subprocess.run([*cli, "add", UI_ADMIN_EMAIL, "--role", "admin", "--password-stdin"], input=password,
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0 and "exists already" in r.stderr:  # the password file was lost: set a new one
        r = subprocess.run([*cli, "set-password", UI_ADMIN_EMAIL, "--password-stdin"], input=password,
                           capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"[ui] creating the UI's platform admin {UI_ADMIN_EMAIL} failed:\n{r.stderr[-2000:]}")
    write_secret(f, password)   # only once the user has it: a file means the admin exists with this password
    return f


def component_env(name: str) -> dict[str, str]:
    env = dict(os.environ)
    if name == "api-server" and env.get("PLATFORM_API_OPENSSL_CONF"):
        env["OPENSSL_CONF"] = env["PLATFORM_API_OPENSSL_CONF"]  # TLS 1.3 minimum (docs/tls.md)
    return env


def stop(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 30
    for p in procs.values():
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logs", type=Path, default=STATE / "logs", help="where each component's log goes")
    ap.add_argument("--password-file", type=Path, default=STATE / "secrets" / "ui-admin.pass",
                    help="the UI admin's password (made on first start)")
    a = ap.parse_args()
    if "FabAuthManager" not in os.environ.get("AIRFLOW__CORE__AUTH_MANAGER", ""):
        sys.exit("[ui] the FAB auth manager is not configured: source .local/env.sh (./dev ui does)")
    password_file = ensure_ui_admin(a.password_file)
    a.logs.mkdir(parents=True, exist_ok=True)
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    procs: dict[str, subprocess.Popen] = {}
    for name in COMPONENTS:
        log = (a.logs / f"ui-{name}.log").open("w")
        procs[name] = subprocess.Popen([AIRFLOW, name], env=component_env(name), cwd=ROOT, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
    base = os.environ.get("AIRFLOW__API__BASE_URL") or f"http://127.0.0.1:{os.environ.get('AIRFLOW__API__PORT', 8080)}"
    say(f"{', '.join(COMPONENTS)} started (logs: {a.logs}/ui-*.log)")
    say(f"Airflow UI: {base}/  platform sign-in: {base}/dashboards/login")
    say(f"  as {UI_ADMIN_EMAIL}, password in {password_file}; Ctrl-C stops")
    rc = 0
    while not stopping:
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            say(f"{dead[0]} exited with code {procs[dead[0]].returncode}, see {a.logs}/ui-{dead[0]}.log; "
                "stopping the others")
            rc = 1
            break
        time.sleep(0.5)
    stop(procs)
    say("stopped")
    return rc


if __name__ == "__main__":
    sys.exit(main())
