-- 0200: what a mining run of DAG mine_store_patterns records beyond the spec's columns (issue 6),
-- and how a successful run supersedes the store's older local patterns (spec 4.1: "keep for 1 year or
-- until next successful mining"). Documented in docs/mine.md.
--
-- mining_jobs: the engine path taken (local engine or PySpark), the transaction window mined
-- [window_start, window_end), the number of transactions in it, the resolved parameters (e.g.
-- min_utility_ratio, max_patterns, memory budget, the DAG run) and the engine's statistics. The next
-- run's default window starts at the window_end of the store's last completed job.
ALTER TABLE mining_jobs
    ADD COLUMN engine_path VARCHAR(10) NOT NULL DEFAULT 'local' CHECK (engine_path IN ('local', 'spark')),
    ADD COLUMN window_start TIMESTAMPTZ,
    ADD COLUMN window_end TIMESTAMPTZ,
    ADD COLUMN n_transactions BIGINT,
    ADD COLUMN params JSONB NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN stats JSONB;

COMMENT ON COLUMN mining_jobs.engine_path IS 'local: compiled engine in one process; spark: PySpark (large stores)';
COMMENT ON COLUMN mining_jobs.window_start IS 'Transactions mined: transaction_date >= window_start (NULL: from the first)';
COMMENT ON COLUMN mining_jobs.window_end IS 'Transactions mined: transaction_date < window_end (NULL: up to the last)';
COMMENT ON COLUMN mining_jobs.params IS 'Resolved run parameters (min_utility_ratio, max_patterns, memory_budget_mb, dag run, ...)';
COMMENT ON COLUMN mining_jobs.stats IS 'Engine statistics of the run (candidates, promising items, partitions, ...)';

CREATE INDEX idx_mining_jobs_store_completed ON mining_jobs (store_id, completed_at DESC) WHERE status = 'completed';

-- local_patterns: a successful run deletes the store's older patterns; an older pattern that a privacy
-- release still references (privacy_applications.pattern_id) is kept and marked superseded instead,
-- and the retention DAG removes it after retention_local_patterns_days. Current patterns of a store:
-- superseded_at IS NULL.
ALTER TABLE local_patterns
    ADD COLUMN superseded_at TIMESTAMPTZ,
    ADD COLUMN superseded_by_job_id UUID REFERENCES mining_jobs(id);

COMMENT ON COLUMN local_patterns.superseded_at IS
    'Set when a later successful mining of the store replaced this pattern but a privacy release still references it';

CREATE INDEX idx_local_patterns_store_current ON local_patterns (store_id) WHERE superseded_at IS NULL;

-- Mining settings beyond 0007's (spark_threshold_transactions, max_patterns_per_job, mining_memory_budget_mb).
INSERT INTO server_configs (config_key, config_value, data_type, description) VALUES
('mining_default_min_utility_ratio', '0.01', 'number',
 'min_utility of a mining run when neither the run nor min_utility_threshold sets one: this share of the store''s total utility in the window'),
('mining_default_max_pattern_length', '5', 'number',
 'max_pattern_length of a mining run when neither the run nor max_pattern_length sets one (spec default 5)'),
('spark_partitions_per_core', '4', 'number',
 'PySpark mining: enumeration partitions per executor core (first items are spread over them by estimated work)')
ON CONFLICT (config_key) DO NOTHING;
