-- 0400: federated rounds (issue 8): the round's parameters, error message and phase; global patterns
-- with their noise standard deviation, 95 % interval and "confident" flag; a view of the latest
-- version; the parties' key registry, their private keys and the stores' per-round client state.
--
-- Lifecycle of federated_rounds.status (spec values kept): pending (row created, invitations not
-- yet sent) -> running -> completed | failed (error_message says why; a failed round releases
-- nothing). Every completed round is a version of the global patterns: rows are never updated or
-- deleted, global_patterns_latest shows the newest completed round (per region).

ALTER TABLE federated_rounds
    ADD COLUMN params JSONB NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN error_message TEXT,
    ADD COLUMN mode VARCHAR(10) CHECK (mode IN ('secure', 'local')),
    ADD COLUMN region_id UUID,
    ADD COLUMN coordinator_id VARCHAR(128),
    ADD COLUMN current_phase VARCHAR(64),
    ADD COLUMN privacy_cost JSONB,
    ADD COLUMN levels JSONB,
    ADD COLUMN dag_run_id VARCHAR(250);
COMMENT ON COLUMN federated_rounds.params IS 'The Params the round ran with (after defaults), and the bounds (l, C) used.';
COMMENT ON COLUMN federated_rounds.error_message IS 'Why a failed round failed (phase and reason); NULL otherwise.';
COMMENT ON COLUMN federated_rounds.levels IS 'Per level: candidates, clients, survivors, dropped stores, seconds.';
COMMENT ON COLUMN federated_rounds.privacy_cost IS 'Cost per participating store (OpenDP): accounting, rho, epsilon at the round delta.';
CREATE INDEX idx_federated_rounds_region_number ON federated_rounds (region_id, round_number DESC);

ALTER TABLE global_patterns
    ADD COLUMN utility_stddev DECIMAL,
    ADD COLUMN utility_ci_low DECIMAL,
    ADD COLUMN utility_ci_high DECIMAL,
    ADD COLUMN confident BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN pattern_rank INTEGER,
    ADD COLUMN pattern_length INTEGER,
    ADD CONSTRAINT global_patterns_utility_nonnegative CHECK (aggregated_utility >= 0),
    ADD CONSTRAINT global_patterns_coverage_range CHECK (client_coverage_percent BETWEEN 0 AND 100);
COMMENT ON COLUMN global_patterns.pattern_items IS 'Item names, or keyed 64-bit ids (16 hex digits) when the stores hash items.';
COMMENT ON COLUMN global_patterns.utility_stddev IS 'Standard deviation of the DP noise in aggregated_utility (currency units).';
COMMENT ON COLUMN global_patterns.confident IS 'utility - 1.96 stddev clears the round''s threshold (min_utility, or the top-k boundary).';
CREATE UNIQUE INDEX uq_global_patterns_round_rank ON global_patterns (round_id, pattern_rank) WHERE pattern_rank IS NOT NULL;

CREATE VIEW global_patterns_latest WITH (security_invoker = true) AS
SELECT gp.*, fr.round_number, fr.region_id, fr.completed_at AS round_completed_at
  FROM global_patterns gp
  JOIN federated_rounds fr ON fr.id = gp.round_id
 WHERE fr.id IN (SELECT DISTINCT ON (region_id) id FROM federated_rounds
                  WHERE status = 'completed' ORDER BY region_id, round_number DESC);
GRANT SELECT ON global_patterns_latest TO app_store_manager, app_regional_coordinator, app_admin;

-- the chain's key registry (public halves) ------------------------------------------------------
CREATE TABLE federate_parties (
    party_id VARCHAR(128) PRIMARY KEY,
    role VARCHAR(20) NOT NULL CHECK (role IN ('store', 'coordinator')),
    store_id UUID REFERENCES stores(id),
    region_id UUID,
    public_key TEXT NOT NULL CHECK (public_key ~ '^[A-Za-z0-9+/]{43}=$'),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT federate_parties_store CHECK ((role = 'store') = (store_id IS NOT NULL))
);
COMMENT ON TABLE federate_parties IS 'Pinned Ed25519 public keys of every party of the federated rounds (include/federate/identities.py).';
GRANT SELECT ON federate_parties TO app_store_manager, app_regional_coordinator, app_admin;

-- private keys, at their owner: a store's rows are visible to that store only --------------------
CREATE TABLE federate_party_secrets (
    party_id VARCHAR(128) PRIMARY KEY REFERENCES federate_parties(party_id),
    store_id UUID REFERENCES stores(id),
    secret TEXT NOT NULL,
    key_id VARCHAR(64) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
COMMENT ON COLUMN federate_party_secrets.secret IS 'Ed25519 private key: AES-256-GCM token (platform_encryption keyring) unless key_id = ''plain''.';
SELECT app_enable_store_rls('federate_party_secrets', p_regional_read => false);

-- a store's secure-aggregation state between the deferrals of its client task; deleted at round end
CREATE TABLE federate_client_states (
    store_id UUID NOT NULL REFERENCES stores(id),
    round_id UUID NOT NULL REFERENCES federated_rounds(id),
    state TEXT NOT NULL,
    key_id VARCHAR(64) NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (store_id, round_id)
);
COMMENT ON TABLE federate_client_states IS 'Per store and round: the client state machine, including the round''s secret keys (encrypted); never seen by the coordinator.';
SELECT app_enable_store_rls('federate_client_states', p_regional_read => false);
GRANT SELECT, INSERT, UPDATE, DELETE ON federate_party_secrets, federate_client_states TO app_store_manager, app_admin;
