"""default_args of every DAG: a real owner, retries with exponential back-off."""
from datetime import timedelta

OWNER = "data-platform"

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
}
