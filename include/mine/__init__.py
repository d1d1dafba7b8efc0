"""Per-store mining runs (issue 6): the job lifecycle of DAG ``mine_store_patterns``.

Spec 3.2: a ``mining_jobs`` row per store and run (``pending`` -> ``running`` -> ``completed`` /
``failed``), the store's transactions of the window read in batches through a server-side cursor,
the compiled engine (:mod:`include.mining`) run, the patterns written to ``local_patterns`` with
COPY, and the store's older patterns superseded (spec 4.1) in the same transaction as the job's
completion, so a failed run leaves them untouched and a retried run never duplicates.

* :mod:`include.mine.params`  - run parameters, defaults from ``server_configs``, guard rails;
* :mod:`include.mine.jobs`    - planning (stores, windows, engine path, pending jobs) and running a job;
* :mod:`include.mine.local`   - the local path: the engine in a child process whose peak resident
  memory is measured by the kernel (``VmHWM``) and held to the memory budget;
* :mod:`include.mine.spark`   - the PySpark path for large stores (search space partitioned by first item);
* :mod:`include.mine.store`   - the SQL of this package (windows, job rows, results, superseding);
* :mod:`include.mine.memory`  - resident-memory measurement.

No Airflow import here: the DAG file wires these functions. Documentation: ``docs/mine.md``.
"""
from include.mine.errors import GuardRailError, MiningError, ParameterError, PermanentMiningError

__all__ = ["GuardRailError", "MiningError", "ParameterError", "PermanentMiningError"]
