"""Transaction file ingestion (issue 5): formats (the contract), validation (great-expectations),
upload/discovery and loading. No Airflow imports; ``docs/ingest.md`` describes the contract."""
