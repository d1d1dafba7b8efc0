-- 0100: transaction file ingestion (issue 5).
--
-- transaction_files gets the content checksum that makes a re-upload of the same content a
-- duplicate (loaded once), and a link from a duplicate to the file that was loaded.
-- The spec's columns are unchanged; s3_key always names where the object is now
-- (incoming/ -> processed/ or failed/).

ALTER TABLE transaction_files
    ADD COLUMN IF NOT EXISTS content_sha256 CHAR(64)
        CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    ADD COLUMN IF NOT EXISTS duplicate_of UUID REFERENCES transaction_files(id);

COMMENT ON COLUMN transaction_files.content_sha256 IS
    'SHA-256 (hex) of the file content: set by the upload command, or by the loader for files dropped into the bucket';
COMMENT ON COLUMN transaction_files.duplicate_of IS
    'the file with the same content (same store) whose rows were loaded; this upload loaded nothing';

-- At most one loaded copy of a content per store: the guarantee behind duplicate detection
-- (the loader also serialises loads of one content with an advisory lock).
CREATE UNIQUE INDEX IF NOT EXISTS uq_transaction_files_loaded_content
    ON transaction_files (store_id, content_sha256)
    WHERE processing_status = 'completed' AND duplicate_of IS NULL;

-- One registration per object: discovery of files dropped into the bucket is idempotent.
CREATE UNIQUE INDEX IF NOT EXISTS uq_transaction_files_object
    ON transaction_files (s3_bucket, s3_key);
