-- 0303: decoding keyed item ids (privacy_configs.hash_patterns) for users who hold the chain key.
--
-- The key is never stored. A key holder runs `python -m include.privacy hash-dictionary`, which computes
-- HMAC-SHA256(K_chain, item)[:64 bits] for the item catalogue and fills this table; the view then shows
-- global_patterns with item names. Only roles granted app_privacy_key_holder (and admins) may read it:
-- the coordinator must not, because the table is as good as the key for a public catalogue.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_privacy_key_holder') THEN
        CREATE ROLE app_privacy_key_holder NOLOGIN;
    END IF;
END
$roles$;

CREATE TABLE privacy_hash_dictionary (
    key_fingerprint CHAR(16) NOT NULL CHECK (key_fingerprint ~ '^[0-9a-f]{16}$'),
    item_hash CHAR(16) NOT NULL CHECK (item_hash ~ '^[0-9a-f]{16}$'),
    item TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (key_fingerprint, item_hash)
);
COMMENT ON TABLE privacy_hash_dictionary IS
    'Keyed item id -> item name, per key (fingerprint); filled by key holders only (include/privacy/cli.py).';
REVOKE ALL ON privacy_hash_dictionary FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON privacy_hash_dictionary TO app_privacy_key_holder, app_admin;

-- global patterns with decoded items (items that are not keyed ids, or unknown ids, pass through)
CREATE VIEW global_patterns_decoded WITH (security_invoker = true) AS
SELECT g.id, g.round_id,
       g.pattern_items AS hashed_items,
       ARRAY(SELECT COALESCE((SELECT min(d.item) FROM privacy_hash_dictionary d WHERE d.item_hash = x.h), x.h)
               FROM unnest(g.pattern_items) WITH ORDINALITY AS x(h, n)
              ORDER BY n) AS pattern_items,
       g.aggregated_utility, g.global_support, g.contributing_stores, g.client_coverage_percent, g.created_at
  FROM global_patterns g;
REVOKE ALL ON global_patterns_decoded FROM PUBLIC;
-- the view runs with the caller's rights: key holders read global patterns like the other app roles
GRANT SELECT ON global_patterns TO app_privacy_key_holder;
GRANT SELECT ON global_patterns_decoded TO app_privacy_key_holder, app_admin;
