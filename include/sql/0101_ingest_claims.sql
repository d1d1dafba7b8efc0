-- 0101: claims of transaction files (issue 5: recovering files stuck in 'processing').
--
-- A loader claims a file ('pending' -> 'processing') and holds a session-level advisory lock on it
-- while it works (include/ingest/load.py). A file whose claim is older than the sweep's timeout and
-- whose lock is free lost its loader (the worker died); the DAG's `recover` step resets it to
-- 'pending' or, after too many attempts, marks it 'failed' (include/ingest/recover.py).

ALTER TABLE transaction_files
    ADD COLUMN IF NOT EXISTS processing_started_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS processing_attempts INTEGER NOT NULL DEFAULT 0
        CHECK (processing_attempts >= 0),
    ADD COLUMN IF NOT EXISTS processing_owner TEXT;

COMMENT ON COLUMN transaction_files.processing_started_at IS
    'when the file was last claimed for processing (status processing)';
COMMENT ON COLUMN transaction_files.processing_attempts IS
    'claims of the file since it was registered or last retried by hand from failed (each task try is one)';
COMMENT ON COLUMN transaction_files.processing_owner IS
    'who made the last claim: the Airflow task instance (dag/run/task[map] try n) or host:pid';

-- The sweep's scan: only the few files in processing.
CREATE INDEX IF NOT EXISTS idx_transaction_files_processing
    ON transaction_files (processing_started_at)
    WHERE processing_status = 'processing';
