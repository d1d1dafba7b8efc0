-- 0500: retention, archival and backups (issue 10, spec 4.1 and 4.2). Used by include/retain.
--
--   archive_manifests        one row per archive run of a table: what went to cold storage (S3 Parquet),
--                            its time range, row count and bytes, and its state:
--                              pending    rows being written to the bucket
--                              written    every file written; not yet read back / rows still here
--                              committed  files read back and checked, rows deleted in the same
--                                         transaction that set this state (never one without the other)
--                              abandoned  a run that crashed before committing: its files were removed
--                                         by the next run, its rows were never deleted
--   archive_files            the Parquet files of a manifest (one per store and month), sha256 and rows
--   backup_restore_points    per-table row counts at a chosen instant, taken while writers were held
--                            off, so that a point-in-time restore to that instant can be checked exactly
--   global_patterns_versions every federated round's global pattern set (a version = a round_number);
--                            the newest completed one is global_patterns_latest (migration 0400)
--   schema retain_staging    staging tables of `python -m include.retain restore-archive --staging`

CREATE TABLE archive_manifests (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id UUID NOT NULL,
    table_name VARCHAR(63) NOT NULL CHECK (table_name IN ('transactions', 'activity_logs')),
    as_of DATE NOT NULL,
    cutoff TIMESTAMPTZ NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'written', 'committed', 'abandoned')),
    bucket VARCHAR(255) NOT NULL,
    manifest_key VARCHAR(1024),
    range_start TIMESTAMPTZ,
    range_end TIMESTAMPTZ,
    row_count BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    partitions_dropped TEXT[] NOT NULL DEFAULT '{}',
    error_message TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    written_at TIMESTAMPTZ,
    committed_at TIMESTAMPTZ,
    CHECK (status <> 'committed' OR committed_at IS NOT NULL)
);
COMMENT ON TABLE archive_manifests IS
    'Archive runs of include/retain: rows moved to Parquet in the bucket; committed = read back and deleted.';
-- one open (pending/written) archive per table: a second concurrent run fails instead of interleaving
CREATE UNIQUE INDEX uq_archive_manifests_open ON archive_manifests (table_name)
    WHERE status IN ('pending', 'written');
CREATE INDEX idx_archive_manifests_table_status ON archive_manifests (table_name, status, created_at);

CREATE TABLE archive_files (
    manifest_id UUID NOT NULL REFERENCES archive_manifests(id) ON DELETE CASCADE,
    s3_key VARCHAR(1024) NOT NULL,
    store_id UUID,
    year INTEGER NOT NULL,
    month INTEGER NOT NULL CHECK (month BETWEEN 1 AND 12),
    row_count BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    sha256 CHAR(64) NOT NULL,
    min_time TIMESTAMPTZ NOT NULL,
    max_time TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (manifest_id, s3_key)
);
CREATE INDEX idx_archive_files_lookup ON archive_files (store_id, min_time, max_time);

CREATE TABLE backup_restore_points (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    label TEXT NOT NULL,
    target_time TIMESTAMPTZ NOT NULL,
    database_name TEXT NOT NULL DEFAULT current_database(),
    table_counts JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON TABLE backup_restore_points IS
    'Row counts per table at target_time (writers held off by SHARE locks); a PITR restore to target_time must match.';
CREATE INDEX idx_backup_restore_points_target ON backup_restore_points (target_time DESC);

-- maintenance data of the retention/backup jobs: the owner role only
REVOKE ALL ON archive_manifests, archive_files, backup_restore_points FROM PUBLIC;
GRANT SELECT ON archive_manifests, archive_files, backup_restore_points TO app_admin;

-- global patterns are kept for ever: every round's set is a version (its round_number) ------------
CREATE VIEW global_patterns_versions WITH (security_invoker = true) AS
SELECT r.round_number AS version, r.id AS round_id, r.status, r.completed_at,
       count(g.id) AS patterns, min(g.created_at) AS first_created_at
  FROM federated_rounds r JOIN global_patterns g ON g.round_id = r.id
 GROUP BY r.round_number, r.id, r.status, r.completed_at;
COMMENT ON VIEW global_patterns_versions IS 'Every federated round''s global pattern set: version = round_number.';

GRANT SELECT ON global_patterns_versions
    TO app_store_manager, app_regional_coordinator, app_admin;

-- restore-archive --staging writes here (never into the live tables)
CREATE SCHEMA IF NOT EXISTS retain_staging;
COMMENT ON SCHEMA retain_staging IS 'Staging tables of restore-archive --staging (include/retain).';
