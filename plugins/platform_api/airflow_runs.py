"""Starting DAG runs from the API: a run is created in Airflow's database (queued, like a run started
with Airflow's REST API); the DAG's Params validate the conf once more."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from include.access.errors import Invalid, Unavailable


def trigger(dag_id: str, conf: dict, *, user_name: str) -> str:
    """The run id of a new run of ``dag_id`` with ``conf``."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound
    from airflow.utils.types import DagRunTriggeredByType

    run_id = f"platform_api__{datetime.now(timezone.utc):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
    try:
        dr = trigger_dag(dag_id, triggered_by=DagRunTriggeredByType.REST_API, run_id=run_id, conf=conf,
                         triggering_user_name=user_name)
    except DagNotFound as e:
        raise Unavailable(f"DAG {dag_id} is not known to Airflow yet (not parsed): {e}") from None
    except ValueError as e:  # ParamValidationError is one
        raise Invalid(f"{dag_id}: {e}") from None
    return dr.run_id
