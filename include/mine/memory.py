"""Resident memory of a mining run, measured (not estimated).

* :func:`peak_rss_mb` - the kernel's high-water mark of a process's resident set (``VmHWM`` in
  ``/proc/<pid>/status``). It belongs to the process's address space, so a fresh child process
  started for the mining reports the peak of the mining alone (``ru_maxrss`` would not: Linux carries
  it across ``execve`` from the forking parent).
* :class:`RssSampler` - for work spread over several processes (the PySpark driver, its JVM and its
  Python workers): samples the summed resident set of a process tree and keeps the maximum; it can
  call back when a budget is exceeded.
"""
from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Callable

_KB = 1024.0


def _status_kb(pid: int | str, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(field.encode() + b":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak resident set size of ``pid`` in MB (``VmHWM``); None if the process is gone."""
    kb = _status_kb(pid, "VmHWM")
    if kb is None and pid == "self":  # not Linux: ru_maxrss (KB on Linux/BSD, bytes on macOS)
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / (_KB * _KB) if sys.platform == "darwin" else r / _KB
    return None if kb is None else kb / _KB


def rss_mb(pid: int | str = "self") -> float | None:
    """Current resident set size of ``pid`` in MB (``VmRSS``); None if the process is gone."""
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else kb / _KB


def tree_rss_mb(root: int) -> float:
    """Summed resident set of ``root`` and all its descendants, in MB."""
    import psutil

    try:
        p = psutil.Process(root)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total / (_KB * _KB)


class RssSampler:
    """Samples the resident set of a process tree every ``interval`` seconds in a thread.

    ``peak_mb`` is the largest sum seen; ``on_exceed(current_mb)`` is called once when the sum goes
    above ``budget_mb``. Use as a context manager around the work.
    """

    def __init__(self, root: int | None = None, *, interval: float = 0.2, budget_mb: float | None = None,
                 on_exceed: Callable[[float], None] | None = None):
        self.root = root or os.getpid()
        self.interval = interval
        self.budget_mb = budget_mb
        self.on_exceed = on_exceed
        self.peak_mb = 0.0
        self.exceeded_mb: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> float:
        cur = tree_rss_mb(self.root)
        self.peak_mb = max(self.peak_mb, cur)
        if self.budget_mb is not None and cur > self.budget_mb and self.exceeded_mb is None:
            self.exceeded_mb = cur
            if self.on_exceed is not None:
                self.on_exceed(cur)
        return cur

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def wait_and_watch(proc, *, budget_mb: float | None, interval: float = 0.05,
                   timeout: float | None = None) -> tuple[int, float, float | None]:
    """Wait for a ``subprocess.Popen`` child while watching its resident set.

    Returns ``(returncode, peak_mb, exceeded_mb)``: ``peak_mb`` is the child's ``VmHWM`` (the last value
    read before it exited); when the child's resident set goes above ``budget_mb`` it is killed and
    ``exceeded_mb`` is the size seen.
    """
    peak = 0.0
    exceeded = None
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        hwm = peak_rss_mb(proc.pid)
        cur = rss_mb(proc.pid)
        if hwm is not None:
            peak = max(peak, hwm)
        if budget_mb is not None and cur is not None and cur > budget_mb:
            exceeded = cur
            proc.kill()
            proc.wait()
            return proc.returncode, max(peak, cur), exceeded
        rc = proc.poll()
        if rc is not None:
            return rc, peak, None
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"mining process {proc.pid} did not finish within {timeout} s")
        time.sleep(interval)
