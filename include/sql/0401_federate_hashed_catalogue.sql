-- 0401: federated rounds over keyed item ids (privacy_configs.hash_patterns; issue 8).
--
-- When an invited store hashes its patterns, the whole round runs on keyed ids: the coordinator builds
-- the level-1 domain from this view, which lists the ids (and the fingerprint of the key that made
-- them) of the catalogue a key holder hashed with `python -m include.privacy hash-dictionary`, but
-- never the item names: ids alone are opaque to whoever does not hold the key, so the coordinator may
-- read them. The newest key (by fingerprint) is the round's key.
CREATE VIEW privacy_hashed_catalogue AS
SELECT key_fingerprint, item_hash, max(created_at) AS created_at
  FROM privacy_hash_dictionary
 GROUP BY key_fingerprint, item_hash;
COMMENT ON VIEW privacy_hashed_catalogue IS
    'Keyed item ids per key fingerprint, without names: the level-1 domain of rounds over hashed ids';
REVOKE ALL ON privacy_hashed_catalogue FROM PUBLIC;
GRANT SELECT ON privacy_hashed_catalogue TO app_regional_coordinator, app_admin, app_privacy_key_holder;
