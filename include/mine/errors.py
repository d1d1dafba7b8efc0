"""Errors of a mining run. ``PermanentMiningError`` marks failures a retry cannot fix (the DAG
fails the task without retrying); anything else is retried by Airflow."""
from __future__ import annotations


class MiningError(RuntimeError):
    """A mining run failed; ``memory_used_mb`` is the peak measured before the failure, if known."""

    memory_used_mb: float | None = None


class PermanentMiningError(MiningError):
    """Retrying with the same parameters fails the same way."""


class ParameterError(PermanentMiningError, ValueError):
    """The run's parameters are invalid or rejected up front (message names the parameter)."""


class GuardRailError(PermanentMiningError):
    """The run stopped at a guard rail (pattern count, memory budget); the message names the
    parameter to raise."""
