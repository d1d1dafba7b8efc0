-- 0006: column-level encryption and password hashing (spec 5.1, 5.2 "Sensitive fields encrypted with
-- separate keys"). Encryption happens in the application (include/security/crypto.py: AES-256-GCM from
-- the `cryptography` package, keys from the `platform_encryption` connection); the database only ever
-- sees ciphertext, and stores the key id beside it so keys can rotate.
--
-- users.email at rest:
--   email            the spec's column (VARCHAR(255) UNIQUE NOT NULL) now holds a keyed blind index
--                    "<index key id>:<hex HMAC-SHA256 of the normalised address>": lookups and the
--                    spec's UNIQUE constraint keep working, the address itself is not stored in it.
--                    (Ciphertext could not keep UNIQUE, and would not fit VARCHAR(255) for long addresses.)
--   email_ciphertext "g1:" + base64url(nonce || AES-256-GCM ciphertext || tag) of the address
--   email_key_id     the id of the data key that encrypted email_ciphertext
-- users.password_hash: argon2id (or bcrypt) encoded hashes only; a plaintext password is rejected.
--
-- local_patterns.pattern_items, when privacy_configs.encrypt_patterns is true for the store: every
-- element is a "g1:" token and items_key_id names the key; items_key_id NULL means plaintext items.
-- A trigger refuses plaintext patterns for a store whose config asks for encryption.

ALTER TABLE users
    ADD COLUMN email_ciphertext TEXT NOT NULL,
    ADD COLUMN email_key_id VARCHAR(64) NOT NULL,
    ADD CONSTRAINT users_email_blind_index CHECK (email ~ '^[A-Za-z0-9_.-]{1,32}:[0-9a-f]{64}$'),
    ADD CONSTRAINT users_email_ciphertext_format CHECK (email_ciphertext ~ '^g1:[A-Za-z0-9_-]+$'),
    ADD CONSTRAINT users_password_hash_slow CHECK (password_hash ~ '^\$(argon2(id|i|d)|2[aby])\$');

ALTER TABLE privacy_configs
    ADD COLUMN encrypt_patterns BOOLEAN NOT NULL DEFAULT false;
COMMENT ON COLUMN privacy_configs.encrypt_patterns IS
    'Store local_patterns.pattern_items of this store encrypted (AES-256-GCM, key id in items_key_id).';

ALTER TABLE local_patterns
    ADD COLUMN items_key_id VARCHAR(64),
    ADD CONSTRAINT local_patterns_items_encrypted_format CHECK (
        items_key_id IS NULL
        OR array_to_string(pattern_items, ',') ~ '^g1:[A-Za-z0-9_-]+(,g1:[A-Za-z0-9_-]+)*$');
COMMENT ON COLUMN local_patterns.items_key_id IS
    'NULL: pattern_items are plaintext. Otherwise the key id that encrypted each element of pattern_items.';

CREATE FUNCTION local_patterns_require_encryption() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF NEW.items_key_id IS NULL AND EXISTS (
            SELECT 1 FROM public.privacy_configs pc
             WHERE pc.store_id = NEW.store_id AND pc.encrypt_patterns) THEN
        RAISE EXCEPTION 'local_patterns of store % must be encrypted (privacy_configs.encrypt_patterns is true): write them through include.db.mining',
            NEW.store_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER local_patterns_require_encryption BEFORE INSERT OR UPDATE OF pattern_items, items_key_id, store_id
    ON local_patterns FOR EACH ROW EXECUTE FUNCTION local_patterns_require_encryption();
