"""The platform's Assets: the data one DAG writes and another is scheduled on.

One Asset per kind of data; the store is carried in the asset event's ``extra`` (``store_id``)
so that DAGs scheduled on an Asset can map over the stores that changed.
"""
from airflow.sdk import Asset

SCHEMA = Asset(name="platform_schema", uri="platform://postgres/schema_migrations")
TRANSACTIONS = Asset(name="store_transactions", uri="platform://postgres/transactions")
LOCAL_PATTERNS = Asset(name="local_patterns", uri="platform://postgres/local_patterns")
GLOBAL_PATTERNS = Asset(name="global_patterns", uri="platform://postgres/global_patterns")
ACTIVITY = Asset(name="activity_logs", uri="platform://postgres/activity_logs")
PRIVATE_CONTRIBUTIONS = Asset(name="privacy_contributions", uri="platform://postgres/privacy_applications")
