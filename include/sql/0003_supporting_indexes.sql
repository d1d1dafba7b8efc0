-- 0003: indexes and uniqueness beyond the spec that the workflows (spec section 3) and the foreign keys
-- need. The spec's own indexes are in 0001 under their spec names.

-- foreign keys without an index make every DELETE/UPDATE of the referenced row scan the child table
CREATE INDEX idx_stores_manager ON stores (manager_id);
CREATE INDEX idx_stores_region ON stores (region_id);
CREATE INDEX idx_transaction_files_store_uploaded ON transaction_files (store_id, upload_timestamp DESC);
CREATE INDEX idx_transactions_file ON transactions (file_id);
CREATE INDEX idx_mining_jobs_store_status ON mining_jobs (store_id, status);
CREATE INDEX idx_local_patterns_job ON local_patterns (mining_job_id);
CREATE INDEX idx_privacy_applications_store_applied ON privacy_applications (store_id, applied_at);
CREATE INDEX idx_privacy_applications_pattern ON privacy_applications (pattern_id);
CREATE INDEX idx_round_participations_store ON round_participations (store_id);
CREATE INDEX idx_federated_rounds_status ON federated_rounds (status);

-- the work queue of the ingestion DAG (spec 3.1): files not yet finished
CREATE INDEX idx_transaction_files_open ON transaction_files (processing_status, upload_timestamp)
    WHERE processing_status IN ('pending', 'processing');

-- "Privacy settings per store": one row per store (the history of changes is in activity_logs)
CREATE UNIQUE INDEX uq_privacy_configs_store ON privacy_configs (store_id);

-- rounds are numbered sequentially (spec 3.3); a store contributes once to a round, so a retried
-- contribution cannot be counted twice
CREATE UNIQUE INDEX uq_federated_rounds_number ON federated_rounds (round_number);
CREATE UNIQUE INDEX uq_round_participations_round_store ON round_participations (round_id, store_id);
