-- 0600: search and observability (issue 11): shipping state for Elasticsearch, the version counter
-- that invalidates the Redis cache of server_configs, and the durable copy of revoked API tokens.
-- PostgreSQL stays the source of truth: Elasticsearch and Redis hold copies that can be rebuilt.

-- Shipping state, one row per stream and target ("<target>/activity_logs", "<target>/performance_metrics",
-- "<target>/reconcile"). target = the Elasticsearch namespace (index prefix; 'default' for none).
-- The high-water mark is the (time, id) of the last row whose document Elasticsearch acknowledged;
-- each run re-reads from hwm_time - overlap with create-only bulk requests, so a row that committed
-- late is still shipped and a row shipped before is not indexed again (document id = row id).
CREATE TABLE search_ship_state (
    stream TEXT PRIMARY KEY,
    hwm_time TIMESTAMPTZ,
    hwm_id UUID,
    docs_created BIGINT NOT NULL DEFAULT 0,
    docs_existing BIGINT NOT NULL DEFAULT 0,
    runs BIGINT NOT NULL DEFAULT 0,
    last_run_started_at TIMESTAMPTZ,
    last_success_at TIMESTAMPTZ,
    last_error TEXT,
    last_error_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON TABLE search_ship_state IS
    'High-water marks of the activity_logs/performance_metrics shipping to Elasticsearch (include/search/ship.py).';

-- The rounds whose global patterns are in Elasticsearch (indexed once the round is completed).
CREATE TABLE search_shipped_rounds (
    target TEXT NOT NULL,
    round_id UUID NOT NULL REFERENCES federated_rounds(id),
    round_number INTEGER NOT NULL,
    patterns_indexed INTEGER NOT NULL,
    shipped_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (target, round_id)
);
COMMENT ON TABLE search_shipped_rounds IS
    'Completed federated rounds whose global_patterns were indexed into Elasticsearch, per target.';

-- server_configs cache invalidation: every statement that changes server_configs bumps the version
-- and notifies channel server_configs_changed (payload: the new version). The Redis cache
-- (include/search/live.py ConfigCache) stores the version it was filled at and is refilled when the
-- database's version differs; a LISTENer may also drop the cached copy on the notification.
CREATE TABLE server_configs_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    version BIGINT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO server_configs_version (singleton, version) VALUES (true, 1);
GRANT SELECT ON server_configs_version TO PUBLIC;

CREATE FUNCTION server_configs_bump_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE v BIGINT;
BEGIN
    UPDATE server_configs_version SET version = version + 1, changed_at = now() RETURNING version INTO v;
    PERFORM pg_notify('server_configs_changed', v::text);
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION server_configs_bump_version() FROM PUBLIC;

CREATE TRIGGER server_configs_cache_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON server_configs
    FOR EACH STATEMENT EXECUTE FUNCTION server_configs_bump_version();

-- Revoked API tokens (JWT ids): Redis answers "is this token revoked?" on every request; this table is
-- the durable copy Redis is reloaded from after a restart or flush (nothing lives only in Redis).
-- Rows past expires_at are useless (the token is expired anyway) and may be purged.
CREATE TABLE token_revocations (
    jti TEXT PRIMARY KEY,
    user_id UUID,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    reason TEXT
);
CREATE INDEX idx_token_revocations_expires ON token_revocations (expires_at);
GRANT SELECT, INSERT ON token_revocations TO app_admin;
COMMENT ON TABLE token_revocations IS
    'Revoked JWT ids until their expiry; mirrored into Redis by include/search/live.py TokenRevocations.';
