-- 0007: platform settings beyond the spec's six rows, in the spec's server_configs table, for the DAGs
-- of the other areas. ON CONFLICT DO NOTHING: an environment that already tuned a value keeps it.
-- Each value is read with include.db.configs.get_config(key) (typed by data_type). Documented in
-- docs/schema.md; areas that own a setting may change its value with a migration of their range.
INSERT INTO server_configs (config_key, config_value, data_type, description) VALUES
-- ingestion (issue 5)
('ingest_max_reject_ratio', '0.05', 'number',
 'Share of rejected transactions above which a whole file fails and nothing is inserted'),
-- mining (issue 6)
('spark_threshold_transactions', '500000', 'number',
 'A store with more transactions than this in the mining window is mined with PySpark'),
('max_patterns_per_job', '1000000', 'number',
 'A mining run stops with an error when it would produce more patterns than this'),
('mining_memory_budget_mb', '4096', 'number',
 'A mining run stops with an error when its resident memory would exceed this many MB'),
-- privacy (issue 7); l and C are placeholders until `suggest` derives them from the data
('privacy_max_items_per_transaction', '32', 'number',
 'Contribution bound l: items kept per transaction (highest utility first)'),
('privacy_max_transaction_utility', '10000', 'number',
 'Contribution bound C: a transaction''s utility is scaled down to at most this'),
('global_delta', '0.000001', 'number',
 'Platform delta of (epsilon, delta) accounting for every store and round'),
-- retention (issue 10), spec 4.1
('retention_transactions_days', '730', 'number', 'Transactions kept in PostgreSQL (days), then archived'),
('retention_activity_logs_days', '365', 'number', 'Activity logs kept (days), then compressed and archived'),
('retention_performance_metrics_detail_days', '183', 'number', 'Detailed performance metrics kept (days)'),
('retention_performance_metrics_rollup_days', '730', 'number', 'Hourly/daily metric aggregates kept (days)'),
('retention_local_patterns_days', '365', 'number',
 'Local patterns kept (days), or until the store''s next successful mining'),
('timeseries_partitions_ahead_months', '3', 'number',
 'Monthly partitions of activity_logs/performance_metrics created ahead (native path)')
ON CONFLICT (config_key) DO NOTHING;
