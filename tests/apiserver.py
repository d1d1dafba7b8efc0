"""An Airflow api-server of a test's own: a free port, the start, the health wait and the stop of its
whole process group, in one place for every test that needs one (https in TLS mode, docs/tls.md)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests import tlsmode

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def api_server(env: dict, port: int, log_path: Path, *, timeout: float = 240) -> Iterator[str]:
    """Run ``airflow api-server`` on ``port`` with ``env`` (plus the port's ``AIRFLOW__API__*`` settings),
    wait until ``/api/v2/monitor/health`` answers, yield the base URL; the process group is stopped on
    exit. Fails with the log's tail when the server exits or is not up within ``timeout`` seconds."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen([AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port)],
                                env={**env, **tlsmode.api_server_env(port)}, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        base = tlsmode.api_base_url(port)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if requests.get(f"{base}/api/v2/monitor/health", timeout=5, verify=tlsmode.http_verify()).ok:
                        break
                except requests.RequestException:
                    pass
                assert proc.poll() is None, f"api-server exited, see {log_path}:\n{log_path.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"api-server not up after {timeout:.0f} s, see {log_path}"
                time.sleep(1)
            yield base
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
