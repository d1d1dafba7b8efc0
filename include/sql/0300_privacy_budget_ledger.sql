-- 0300: the per-store privacy budget ledger (issue 7). Every charge is a row: store, round, window of
-- transactions read, mechanism, cost (zCDP rho, pure epsilon, delta), status and timestamps.
--
-- How it is used (include/privacy/ledger.py):
--   * a release is first RESERVED (the budget check and the insert run under a per-store advisory lock,
--     before any noise is drawn); a release that would exceed the budget is refused and leaves no row;
--   * once the noisy output exists it is CHARGED (the released values are kept in `output`, so a retried
--     task returns the same noisy values instead of drawing new noise);
--   * a round that fails before its output left the store is ABORTED and costs nothing.
-- Reserved and charged rows count; a transaction is charged only by rows whose window contains it, so
-- disjoint windows compose in parallel and overlapping ones sequentially.
-- Costs are immutable once written; status moves only reserved -> charged | aborted.

CREATE TABLE privacy_budget_ledger (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id UUID NOT NULL REFERENCES stores(id),
    round_id UUID REFERENCES federated_rounds(id),
    release_name VARCHAR(100) NOT NULL DEFAULT 'contribution',
    window_start TIMESTAMPTZ NOT NULL,
    window_end TIMESTAMPTZ NOT NULL,
    mode VARCHAR(12) NOT NULL DEFAULT 'local' CHECK (mode IN ('local', 'distributed')),
    mechanism VARCHAR(30) NOT NULL
        CHECK (mechanism IN ('discrete_laplace', 'discrete_gaussian', 'laplace_threshold', 'gaussian_threshold')),
    accounting VARCHAR(5) NOT NULL CHECK (accounting IN ('pure', 'zcdp')),
    rho DOUBLE PRECISION NOT NULL CHECK (rho >= 0),
    epsilon DOUBLE PRECISION CHECK (epsilon >= 0),
    delta DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (delta >= 0 AND delta < 1),
    epsilon_display DOUBLE PRECISION NOT NULL CHECK (epsilon_display >= 0),
    delta_display DOUBLE PRECISION NOT NULL CHECK (delta_display >= 0 AND delta_display < 1),
    status VARCHAR(10) NOT NULL DEFAULT 'reserved' CHECK (status IN ('reserved', 'charged', 'aborted')),
    details JSONB NOT NULL DEFAULT '{}'::jsonb,
    output JSONB,
    error_message TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    charged_at TIMESTAMPTZ,
    aborted_at TIMESTAMPTZ,
    CONSTRAINT privacy_budget_ledger_window CHECK (window_end > window_start),
    CONSTRAINT privacy_budget_ledger_pure_has_epsilon CHECK ((accounting = 'pure') = (epsilon IS NOT NULL))
);

COMMENT ON TABLE privacy_budget_ledger IS
    'Per-store DP budget charges (include/privacy/ledger.py); reserved and charged rows count, aborted ones do not.';
COMMENT ON COLUMN privacy_budget_ledger.rho IS 'zCDP rho of the release (pure releases: epsilon^2/2, by OpenDP).';
COMMENT ON COLUMN privacy_budget_ledger.epsilon IS 'Pure epsilon (accounting = pure); NULL for zCDP releases.';
COMMENT ON COLUMN privacy_budget_ledger.delta IS 'Delta of approximate mechanisms (thresholds); 0 otherwise.';
COMMENT ON COLUMN privacy_budget_ledger.epsilon_display IS '(epsilon, delta) of this release alone at the platform delta, for display.';
COMMENT ON COLUMN privacy_budget_ledger.details IS 'Plan: bounds, sizes, sensitivities, scales, OpenDP costs (never keys or original values).';
COMMENT ON COLUMN privacy_budget_ledger.output IS 'The released (noisy) contribution, returned again on a retry.';

-- one live release per store, round and release name (a retried task finds it)
CREATE UNIQUE INDEX uq_privacy_budget_ledger_release ON privacy_budget_ledger (store_id, round_id, release_name)
    WHERE status <> 'aborted' AND round_id IS NOT NULL;
CREATE INDEX idx_privacy_budget_ledger_store_window ON privacy_budget_ledger (store_id, window_start, window_end)
    WHERE status <> 'aborted';
CREATE INDEX idx_privacy_budget_ledger_round ON privacy_budget_ledger (round_id);

-- costs and windows are immutable; status only reserved -> charged | aborted
CREATE FUNCTION privacy_budget_ledger_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'aborted' THEN
            RAISE EXCEPTION 'privacy_budget_ledger row % is %: only aborted rows may be deleted', OLD.id, OLD.status
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF (NEW.store_id, NEW.round_id, NEW.release_name, NEW.window_start, NEW.window_end, NEW.mechanism,
        NEW.accounting, NEW.rho, NEW.epsilon, NEW.delta, NEW.mode)
       IS DISTINCT FROM
       (OLD.store_id, OLD.round_id, OLD.release_name, OLD.window_start, OLD.window_end, OLD.mechanism,
        OLD.accounting, OLD.rho, OLD.epsilon, OLD.delta, OLD.mode) THEN
        RAISE EXCEPTION 'privacy_budget_ledger row %: costs, windows and identity are immutable', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status
       AND NOT (OLD.status = 'reserved' AND NEW.status IN ('charged', 'aborted')) THEN
        RAISE EXCEPTION 'privacy_budget_ledger row %: status % -> % is not allowed', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER privacy_budget_ledger_guard BEFORE UPDATE OR DELETE ON privacy_budget_ledger
    FOR EACH ROW EXECUTE FUNCTION privacy_budget_ledger_guard();

-- row-level security: a store sees its own charges, a regional coordinator those of its region (to
-- enforce the global cap), admins all; the owner's pipelines are scoped when they set a store
SELECT app_enable_store_rls('privacy_budget_ledger');
GRANT SELECT ON privacy_budget_ledger TO app_store_manager, app_regional_coordinator;
GRANT SELECT, INSERT, UPDATE ON privacy_budget_ledger TO app_admin;

-- every charge and status change is audited in activity_logs
SELECT audit_table('privacy_budget_ledger', 'privacy_budget_charge');

-- the worst-case spend per store over its live charges (a quick look; exact per-window figures come
-- from include.privacy.ledger.spent)
CREATE VIEW privacy_budget_summary WITH (security_invoker = true) AS
SELECT store_id,
       count(*) FILTER (WHERE status = 'charged')  AS releases_charged,
       count(*) FILTER (WHERE status = 'reserved') AS releases_reserved,
       count(*) FILTER (WHERE status = 'aborted')  AS releases_aborted,
       min(window_start) FILTER (WHERE status <> 'aborted') AS first_window_start,
       max(window_end) FILTER (WHERE status <> 'aborted')   AS last_window_end,
       max(created_at) AS last_release_at
  FROM privacy_budget_ledger
 GROUP BY store_id;
GRANT SELECT ON privacy_budget_summary TO app_store_manager, app_regional_coordinator, app_admin;
