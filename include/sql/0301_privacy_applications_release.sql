-- 0301: privacy_applications records every released pattern value (issue 7), not only values of
-- locally mined patterns, and ties each row to its ledger charge.
--
-- Why pattern_id becomes nullable: a release covers a *public* candidate list (the round's level) or
-- the itemsets that clear a DP threshold; many of them were never mined locally, yet each released
-- value needs its row. pattern_id is set when the itemset is one of the store's local_patterns.
-- RLS (0004) already restricts the table to the store itself: a coordinator never sees originals.
--
-- Units: utilities in currency units (the clipped, fixed-point value divided by the utility scale);
-- original_utility is the clipped value the mechanism saw, noise_added = noisy_utility - original_utility.
-- epsilon_used is the epsilon of the whole release the value belongs to (at the platform delta), not a
-- per-value share: values of one release share one charge (ledger_id).

ALTER TABLE privacy_applications ALTER COLUMN pattern_id DROP NOT NULL;
ALTER TABLE privacy_applications
    ADD COLUMN ledger_id UUID REFERENCES privacy_budget_ledger(id),
    ADD COLUMN round_id UUID REFERENCES federated_rounds(id),
    ADD COLUMN released_items TEXT[],
    ADD COLUMN pattern_length INTEGER,
    ADD COLUMN original_support BIGINT,
    ADD COLUMN noisy_support BIGINT,
    ADD COLUMN noisy_presence BIGINT,
    ADD COLUMN delta_used DOUBLE PRECISION,
    ADD COLUMN noise_type VARCHAR(20) CHECK (noise_type IN ('laplace', 'gaussian'));

COMMENT ON COLUMN privacy_applications.released_items IS
    'The itemset as released: keyed 64-bit ids (16 hex digits) when hash_patterns is on, else item names.';
COMMENT ON COLUMN privacy_applications.epsilon_used IS
    'Epsilon of the whole release (ledger_id) at the platform delta; values of one release share it.';

CREATE INDEX idx_privacy_applications_ledger ON privacy_applications (ledger_id);
CREATE INDEX idx_privacy_applications_round ON privacy_applications (round_id);
