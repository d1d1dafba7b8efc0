"""``apply_function`` of the ``federated_client`` DAG's AssetWatcher (run by the triggerer on each
record of the invitations topic; must stay importable there: no Airflow, light imports).

It returns the payload of the asset event (the signed invitation, still unverified: the task verifies
it) for an invitation addressed to a store of this deployment, and None for anything else.
``FEDERATE_LOCAL_STORES`` (comma-separated store ids) restricts the stores served by this deployment;
unset, every store is served (the single-deployment set-up of this project).
"""
from __future__ import annotations

import os

from include.federate.transport import peek


def local_stores() -> set[str] | None:
    raw = os.environ.get("FEDERATE_LOCAL_STORES", "").strip()
    return {s.strip() for s in raw.split(",") if s.strip()} or None


def accept_invitation(message) -> dict | None:
    value = message.value() if hasattr(message, "value") else message
    if not value:
        return None
    env = peek(value)
    if env is None or env.get("type") != "invitation" or not str(env.get("recipient") or "").startswith("store:"):
        return None
    store = str(env["recipient"]).split(":", 1)[1]
    allowed = local_stores()
    if allowed is not None and store not in allowed:
        return None
    text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return {"store_id": store, "round_id": str(env["round_id"]), "invitation": text}
