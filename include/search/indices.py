"""Index names, the index templates kept in ``templates/*.json``, and index retention.

Every name carries a prefix (the *namespace*): ``""`` in the platform, a random one in tests, so runs
never collide. Indices:

| name | what |
|---|---|
| ``{prefix}activity-logs-YYYY.MM`` | activity_logs by UTC month of ``created_at`` (alias ``{prefix}activity-logs``) |
| ``{prefix}metrics-YYYY.MM`` | performance_metrics by UTC month of ``recorded_at`` (alias ``{prefix}metrics``) |
| ``{prefix}global-patterns`` | global patterns of every completed round |
| ``{prefix}airflow-logs`` | Airflow task logs written by the provider's task handler |

:func:`apply_templates` is what the migration command calls (idempotent PUTs of the composable
templates). Retention deletes whole monthly indices (:func:`delete_expired_indices`), so it needs no
delete-by-query (absent from the integ-test-zip server).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_FILES = ("activity-logs", "metrics", "global-patterns", "airflow-logs")
MONTH_RE = re.compile(r"-(\d{4})\.(\d{2})$")


@dataclass(frozen=True)
class Namespace:
    """Index names under one prefix (``""`` = the platform's own indices)."""

    prefix: str = ""

    def __post_init__(self) -> None:
        if self.prefix and not re.fullmatch(r"[a-z0-9][a-z0-9_\-]*", self.prefix):
            raise ValueError(f"index prefix must be lowercase letters, digits, '-' or '_', got {self.prefix!r}")

    @property
    def target(self) -> str:
        """The name of this namespace in the shipping state tables."""
        return self.prefix.rstrip("-_") or "default"

    def monthly(self, base: str, month: str) -> str:
        return f"{self.prefix}{base}-{month}"

    def activity_logs(self, month: str | None = None) -> str:
        return self.monthly("activity-logs", month) if month else f"{self.prefix}activity-logs-*"

    def metrics(self, month: str | None = None) -> str:
        return self.monthly("metrics", month) if month else f"{self.prefix}metrics-*"

    @property
    def global_patterns(self) -> str:
        return f"{self.prefix}global-patterns"

    @property
    def airflow_logs(self) -> str:
        return f"{self.prefix}airflow-logs"

    def template_name(self, base: str) -> str:
        # "platform-" keeps clear of the stack's built-in templates of the full server (e.g. "metrics")
        return f"{self.prefix}platform-{base}"

    @property
    def all_patterns(self) -> list[str]:
        return [self.activity_logs(), self.metrics(), self.global_patterns, f"{self.airflow_logs}*"]


def load_template(base: str, prefix: str = "") -> dict:
    """The template ``templates/<base>.json`` with ``{prefix}`` filled in, without ``_comment`` keys."""
    text = (TEMPLATE_DIR / f"{base}.json").read_text(encoding="utf-8")
    body = json.loads(text.replace("{prefix}", prefix))
    return {k: v for k, v in body.items() if not k.startswith("_comment")}


def apply_templates(es, prefix: str = "") -> list[str]:
    """PUT every index template of this package (idempotent); returns the template names.

    Called by ``python -m include.db.migrate`` / the ``platform_migrate`` DAG after the SQL migrations,
    and by the ``index_search`` DAG when a template is missing. Indices created before a template
    change keep their mapping; the next monthly index gets the new one.
    """
    names = []
    for base in TEMPLATE_FILES:
        body = load_template(base, prefix)
        name = Namespace(prefix).template_name(base)
        es.indices.put_index_template(name=name, **body)
        names.append(name)
    return names


def templates_present(es, prefix: str = "") -> bool:
    ns = Namespace(prefix)
    return all(es.indices.exists_index_template(name=ns.template_name(b)) for b in TEMPLATE_FILES)


def delete_templates(es, prefix: str) -> None:
    """Remove this namespace's templates (tests and benchmarks; never for the platform's own prefix)."""
    if not prefix:
        raise ValueError("refusing to delete the platform's own templates (empty prefix)")
    ns = Namespace(prefix)
    for b in TEMPLATE_FILES:
        if es.indices.exists_index_template(name=ns.template_name(b)):
            es.indices.delete_index_template(name=ns.template_name(b))


def delete_namespace(es, prefix: str) -> None:
    """Delete every index and template of a test/bench namespace (by exact names)."""
    if not prefix:
        raise ValueError("refusing to delete the platform's own indices (empty prefix)")
    names = list(es.indices.get(index=f"{prefix}*", expand_wildcards="all", ignore_unavailable=True).keys())
    for i in range(0, len(names), 50):
        es.indices.delete(index=",".join(names[i:i + 50]), ignore_unavailable=True)
    delete_templates(es, prefix)


def month_of(index: str) -> date | None:
    m = MONTH_RE.search(index)
    return date(int(m.group(1)), int(m.group(2)), 1) if m else None


def _month_end(d: date) -> datetime:
    nxt = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return datetime(nxt.year, nxt.month, 1, tzinfo=timezone.utc)


def expired_indices(es, *, prefix: str = "", now: datetime | None = None, activity_logs_days: int = 365,
                    metrics_days: int = 183) -> list[str]:
    """Monthly indices whose whole month is older than the retention (spec 4.1: activity logs 1 year,
    detailed metrics 6 months): the month's end lies before ``now - days``."""
    now = now or datetime.now(timezone.utc)
    ns = Namespace(prefix)
    out = []
    for pattern, days in ((ns.activity_logs(), activity_logs_days), (ns.metrics(), metrics_days)):
        cutoff = now - timedelta(days=days)
        names = es.indices.get(index=pattern, expand_wildcards="open,closed", ignore_unavailable=True).keys()
        for name in sorted(names):
            m = month_of(name)
            if m is not None and _month_end(m) <= cutoff:
                out.append(name)
    return out


def delete_expired_indices(es, *, prefix: str = "", now: datetime | None = None, activity_logs_days: int = 365,
                           metrics_days: int = 183) -> list[str]:
    """Delete the indices of :func:`expired_indices` (by exact name); returns them. For the retention DAG,
    with the day counts of ``server_configs`` (retention_activity_logs_days,
    retention_performance_metrics_detail_days)."""
    names = expired_indices(es, prefix=prefix, now=now, activity_logs_days=activity_logs_days,
                            metrics_days=metrics_days)
    for name in names:
        es.indices.delete(index=name, ignore_unavailable=True)
    return names
