"""A second, private Elasticsearch server (the same integ-test-zip as scripts/services.sh) on spare
loopback ports, that a test may stop and restart: the shared server of the local stack is never touched.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.apiserver import free_port

ROOT = Path(__file__).resolve().parents[2]


def es_home() -> Path:
    version = re.search(r"^ES_VERSION=(\S+)", (ROOT / "scripts" / "lib.sh").read_text(), re.M).group(1)
    if os.environ.get("PLATFORM_CACHE_DIR"):
        cache = Path(os.environ["PLATFORM_CACHE_DIR"])
    elif os.geteuid() == 0:
        cache = Path("/var/cache/retail-platform")
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "retail-platform"
    return cache / f"elasticsearch-{version}"


def es_user() -> str:
    return re.search(r"^ES_USER=(\S+)", (ROOT / "scripts" / "lib.sh").read_text(), re.M).group(1)


class SpareElasticsearch:
    def __init__(self) -> None:
        self.home = es_home()
        if not (self.home / "bin" / "elasticsearch").exists():
            raise RuntimeError(f"Elasticsearch not installed in {self.home}: run scripts/install.sh")
        self.base = Path(tempfile.mkdtemp(prefix="spare-es-"))
        self.http_port, self.transport_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        for d in ("data", "logs", "tmp"):
            (self.base / d).mkdir()
        shutil.copytree(self.home / "config", self.base / "config")
        (self.base / "config" / "elasticsearch.yml").write_text(f"""
cluster.name: spare-{self.http_port}
node.name: spare
discovery.type: single-node
network.host: 127.0.0.1
http.port: {self.http_port}
transport.port: {self.transport_port}
path.data: {self.base / 'data'}
path.logs: {self.base / 'logs'}
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
""")
        os.chmod(self.base, 0o755)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", f"{es_user()}:", str(self.base)], check=True)
        self.pid: int | None = None

    @property
    def pidfile(self) -> Path:
        return self.base / "logs" / "es.pid"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=3):
                return True
        except OSError:
            return False

    def start(self, timeout_s: float = 240) -> None:
        java = Path(os.path.realpath(shutil.which("java"))).parent.parent
        env = {**os.environ, "ES_JAVA_HOME": str(java), "ES_PATH_CONF": str(self.base / "config"),
               "ES_TMPDIR": str(self.base / "tmp"), "ES_JAVA_OPTS": "-Xms384m -Xmx384m"}
        cmd = [str(self.home / "bin" / "elasticsearch"), "-d", "-p", str(self.pidfile)]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", es_user(), "--", "env", *[f"{k}={env[k]}" for k in
                                                                ("ES_JAVA_HOME", "ES_PATH_CONF", "ES_TMPDIR",
                                                                 "ES_JAVA_OPTS")], *cmd]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        if out.returncode != 0:
            raise RuntimeError(f"spare Elasticsearch did not start: {out.stdout[-2000:]} {out.stderr[-2000:]}")
        deadline = time.monotonic() + timeout_s
        while not self._healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"spare Elasticsearch on {self.url} not healthy after {timeout_s}s")
            time.sleep(0.5)
        self.pid = int(self.pidfile.read_text().strip())

    def stop(self, timeout_s: float = 60) -> None:
        """SIGTERM the server this object started, and wait until it has exited."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
