"""The local path: the compiled engine mining one store's window in a child process.

Why a child process: its peak resident memory (``VmHWM``, kept by the kernel for the child's own
address space) is the measured memory of the mining alone - reading the transactions, the engine's
search, the patterns and their COPY - and the parent can stop it when it goes above the memory
budget (the engine's search holds the GIL-free native code, so an in-process watchdog could not
interrupt it cleanly). The child does the whole job's work in its own connection and commits the
result and the job's completion in one transaction; the parent records failures.

Run by :func:`run_local`; the child is ``python -m include.mine.local JOB_ID RESULT_FILE STARTED``
with the DSN in the environment (``PLATFORM_MINE_DSN``), never on the command line.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from include.mine import errors
from include.mine.memory import peak_rss_mb, wait_and_watch
from include.mine.params import memory_budget_message, too_many_patterns_message

ROOT = Path(__file__).resolve().parents[2]
DSN_ENV = "PLATFORM_MINE_DSN"
INJECT_ENV = "PLATFORM_MINE_INJECT_FAILURE"  # tests: "before_mining" | "after_copy"

_ERRORS = {c.__name__: c for c in (errors.MiningError, errors.PermanentMiningError, errors.ParameterError,
                                   errors.GuardRailError)}


def run_local(dsn: str, job, *, started: float, inject_failure: str | None = None,
              timeout: float | None = None) -> dict[str, Any]:
    """Mine ``job`` (a :class:`include.mine.store.JobRow` in state running) in a child process; returns
    the child's summary. Raises a :class:`MiningError` (with ``memory_used_mb``) when it fails."""
    fd, result_path = tempfile.mkstemp(prefix=f"mine-{job.id}-", suffix=".json")
    os.close(fd)
    env = dict(os.environ)
    env[DSN_ENV] = dsn
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if inject_failure:
        env[INJECT_ENV] = inject_failure
    else:
        env.pop(INJECT_ENV, None)
    budget = job.memory_budget_mb
    try:
        proc = subprocess.Popen([sys.executable, "-m", "include.mine.local", str(job.id), result_path, repr(started)],
                                env=env, cwd=str(ROOT))
        try:
            rc, peak, exceeded = wait_and_watch(proc, budget_mb=budget, timeout=timeout)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        if exceeded is not None:
            e = errors.GuardRailError(memory_budget_message(exceeded, budget))
            e.memory_used_mb = peak
            raise e
        text = Path(result_path).read_text() if os.path.getsize(result_path) else ""
    finally:
        try:
            os.unlink(result_path)
        except FileNotFoundError:
            pass
    result = json.loads(text) if text else None
    if result is None:
        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
        e = errors.MiningError(f"the mining process ended with {how} without a result "
                               f"(killed by the system's out-of-memory killer?)")
        e.memory_used_mb = peak or None
        raise e
    if not result.get("ok"):
        cls = _ERRORS.get(result.get("error_type"), errors.MiningError)
        e = cls(result["message"])
        e.memory_used_mb = result.get("memory_used_mb") or peak or None
        raise e
    return result["result"]


def mine_job(dsn: str, job_id: uuid.UUID, started: float, inject_failure: str | None = None) -> dict[str, Any]:
    """The child's work: read the window in batches, mine, write the result (one transaction)."""
    import psycopg

    from include.mine import store
    from include.mining import InputError, Miner, TooManyPatterns, UtilityOverflow

    with psycopg.connect(dsn, application_name="mine_store_patterns.local") as conn:
        job = store.get_job(conn, job_id)
        if job is None:
            raise errors.MiningError(f"mining job {job_id} does not exist")
        t0 = time.perf_counter()
        miner = Miner()
        batches = 0
        try:
            for batch in store.iter_transaction_rows(conn, job.store_id, job.window_start, job.window_end,
                                                     job.batch_size):
                miner.add_rows(batch)
                batches += 1
        except (InputError, UtilityOverflow, TypeError, ValueError) as e:
            raise errors.PermanentMiningError(f"store {job.store_id}: transactions cannot be mined: {e}") from e
        conn.commit()  # ends the server-side cursor's transaction
        read_seconds = time.perf_counter() - t0
        if inject_failure == "before_mining":
            raise RuntimeError("injected failure before mining (test)")
        try:
            result = miner.mine(job.min_utility, job.min_support, job.max_pattern_length, job.use_pruning,
                                max_patterns=job.max_patterns)
        except TooManyPatterns:
            raise errors.GuardRailError(too_many_patterns_message(job.max_patterns)) from None
        except UtilityOverflow as e:
            raise errors.PermanentMiningError(f"store {job.store_id}: {e}") from e
        stats = {**result.stats.as_dict(), "read_seconds": round(read_seconds, 3), "batches": batches,
                 "engine_path": "local"}
        pats = (store.to_db_pattern(p.items, p.utility, p.support, p.confidence) for p in result.patterns)
        return store.write_result(conn, job, pats, started=started, memory_used_mb=peak_rss_mb, stats=stats,
                                  inject_failure=inject_failure)


def _main(argv: list[str]) -> int:
    job_id, result_path, started = uuid.UUID(argv[0]), argv[1], float(argv[2])
    inject = os.environ.get(INJECT_ENV) or None
    try:
        out = {"ok": True, "result": mine_job(os.environ[DSN_ENV], job_id, started, inject)}
        rc = 0
    except Exception as e:  # noqa: BLE001 - reported to the parent, which records the failure
        out = {"ok": False, "error_type": type(e).__name__, "message": f"{e}" or type(e).__name__,
               "memory_used_mb": peak_rss_mb()}
        if not isinstance(e, errors.MiningError):
            out["message"] = f"{type(e).__name__}: {e}"
        rc = 1
    Path(result_path).write_text(json.dumps(out, default=str))
    return rc


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
