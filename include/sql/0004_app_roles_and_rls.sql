-- 0004: application roles and row-level security (spec 5.2 "Stores can only access their own data").
--
-- Roles (cluster-wide NOLOGIN group roles; a login role is granted one or more of them and the
-- data-access layer does SET ROLE to exactly one, see include/db/session.py):
--   app_store_manager          one store: reads and writes its own store's rows only
--   app_regional_coordinator   the stores of one region: read-only on raw data (files, transactions,
--                              jobs, local patterns, privacy configs), runs federated rounds; never
--                              sees privacy_applications (a store's original utilities)
--   app_admin                  everything
--
-- Scope comes from session settings that the data-access layer sets per connection or per
-- transaction (set_config(..., is_local)):
--   app.current_store_id   app.current_region_id   app.current_user_id   app.current_role
-- They are trusted: the middle tier (Airflow tasks, the API) sets them and never lets a caller run raw
-- SQL. A role's *privileges* come from GRANTs below; its *rows* from the policies.
--
-- Who bypasses RLS:
--   * superusers (postgres) and roles with BYPASSRLS, always;
--   * the table owner (the role that ran the migrations, "platform") is NOT exempt on the seven store
--     tables (FORCE ROW LEVEL SECURITY): when its session sets app.current_store_id (or
--     app.current_region_id) it is held to that store (region) like an application role; without a
--     scope it sees all rows (migrations, retention, pipelines working across stores). The owner can
--     always ALTER its tables, so FORCE guards against mistakes, not against the owner itself.
--   * referential-integrity checks always bypass RLS (PostgreSQL rule).

DO $roles$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['app_store_manager', 'app_regional_coordinator', 'app_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            RAISE NOTICE 'role % created', r;
        END IF;
    END LOOP;
END
$roles$;

-- session settings ----------------------------------------------------------------------------------
-- SQL functions (inlined, cheap per row); '' and unset both mean "not set"
CREATE FUNCTION app_current_store_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$ SELECT NULLIF(current_setting('app.current_store_id', true), '')::uuid $$;
CREATE FUNCTION app_current_region_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$ SELECT NULLIF(current_setting('app.current_region_id', true), '')::uuid $$;
CREATE FUNCTION app_current_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$ SELECT NULLIF(current_setting('app.current_user_id', true), '')::uuid $$;
CREATE FUNCTION app_current_role() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$ SELECT NULLIF(current_setting('app.current_role', true), '') $$;

-- the owner's scope on FORCEd tables: the session's store, else the session's region, else all
CREATE FUNCTION app_owner_can_access(p_store_id uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN app_current_store_id() IS NOT NULL THEN p_store_id = app_current_store_id()
        WHEN app_current_region_id() IS NOT NULL THEN EXISTS (
            SELECT 1 FROM stores s WHERE s.id = p_store_id AND s.region_id = app_current_region_id())
        ELSE true
    END
$$;

-- the standard policy set of a table holding store data; other areas call it from their migrations
-- for their own store tables, e.g.  SELECT app_enable_store_rls('privacy_budget_ledger');
CREATE FUNCTION app_enable_store_rls(
    p_table regclass,
    p_store_column name DEFAULT 'store_id',
    p_regional_read boolean DEFAULT true,
    p_force boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_rel   name;
    v_owner name;
    v_own   text := format('%I = (SELECT app_current_store_id())', p_store_column);
BEGIN
    SELECT c.relname, pg_get_userbyid(c.relowner) INTO v_rel, v_owner FROM pg_class c WHERE c.oid = p_table;
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_table);
    IF p_force THEN
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', p_table);
    END IF;
    EXECUTE format('CREATE POLICY %I ON %s FOR ALL TO app_store_manager USING (%s) WITH CHECK (%s)',
                   v_rel || '_store_manager', p_table, v_own, v_own);
    IF p_regional_read THEN
        EXECUTE format('CREATE POLICY %I ON %s FOR SELECT TO app_regional_coordinator USING (%I IN (
                            SELECT s.id FROM stores s WHERE s.region_id = (SELECT app_current_region_id())))',
                       v_rel || '_regional_read', p_table, p_store_column);
    END IF;
    EXECUTE format('CREATE POLICY %I ON %s FOR ALL TO app_admin USING (true) WITH CHECK (true)',
                   v_rel || '_admin', p_table);
    EXECUTE format('CREATE POLICY %I ON %s FOR ALL TO %I USING (app_owner_can_access(%I)) WITH CHECK (app_owner_can_access(%I))',
                   v_rel || '_owner', p_table, v_owner, p_store_column, p_store_column);
END
$$;
REVOKE EXECUTE ON FUNCTION app_enable_store_rls(regclass, name, boolean, boolean) FROM PUBLIC;

-- privileges --------------------------------------------------------------------------------------
GRANT USAGE ON SCHEMA public TO app_store_manager, app_regional_coordinator, app_admin;

GRANT SELECT, INSERT, UPDATE, DELETE ON
    users, stores, transaction_files, transactions, mining_jobs, local_patterns, privacy_configs,
    privacy_applications, federated_rounds, round_participations, global_patterns, server_configs
    TO app_admin;
GRANT SELECT, INSERT ON activity_logs, performance_metrics TO app_admin;

GRANT SELECT ON users, stores, server_configs, federated_rounds, global_patterns
    TO app_store_manager, app_regional_coordinator;

GRANT SELECT, INSERT, UPDATE, DELETE ON transaction_files, transactions, mining_jobs, local_patterns
    TO app_store_manager;
GRANT SELECT, INSERT, UPDATE ON privacy_configs TO app_store_manager;
GRANT SELECT, INSERT ON privacy_applications, round_participations TO app_store_manager;

GRANT SELECT ON transaction_files, transactions, mining_jobs, local_patterns, privacy_configs
    TO app_regional_coordinator;
GRANT SELECT, INSERT ON round_participations TO app_regional_coordinator;
GRANT INSERT, UPDATE ON federated_rounds, global_patterns TO app_regional_coordinator;

-- activity and metrics: every role reads its scope and appends; nobody but the owner deletes
GRANT SELECT, INSERT ON activity_logs, performance_metrics TO app_store_manager, app_regional_coordinator;

-- policies: the seven tables of store data (FORCEd: the owner is scoped too) --------------------
SELECT app_enable_store_rls('transaction_files');
SELECT app_enable_store_rls('transactions');
SELECT app_enable_store_rls('mining_jobs');
SELECT app_enable_store_rls('local_patterns');
SELECT app_enable_store_rls('privacy_configs');
SELECT app_enable_store_rls('privacy_applications', p_regional_read => false);  -- originals: the store only
SELECT app_enable_store_rls('round_participations');
-- a coordinator records the contributions of its region's stores
CREATE POLICY round_participations_regional_insert ON round_participations
    FOR INSERT TO app_regional_coordinator
    WITH CHECK (store_id IN (SELECT s.id FROM stores s WHERE s.region_id = (SELECT app_current_region_id())));

-- store-scoped rows that also have platform-wide rows (store_id NULL): not FORCEd, so the owner's
-- pipelines and the SECURITY DEFINER audit functions write freely
SELECT app_enable_store_rls('activity_logs', p_force => false);
SELECT app_enable_store_rls('performance_metrics', p_force => false);
CREATE POLICY activity_logs_regional_insert ON activity_logs FOR INSERT TO app_regional_coordinator
    WITH CHECK (store_id IS NULL OR store_id IN (
        SELECT s.id FROM stores s WHERE s.region_id = (SELECT app_current_region_id())));
CREATE POLICY performance_metrics_regional_insert ON performance_metrics FOR INSERT TO app_regional_coordinator
    WITH CHECK (store_id IS NULL OR store_id IN (
        SELECT s.id FROM stores s WHERE s.region_id = (SELECT app_current_region_id())));

DO $rollup$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'performance_metrics_rollup'::regclass) = 'r' THEN
        PERFORM app_enable_store_rls('performance_metrics_rollup', p_force => false);
        GRANT SELECT ON performance_metrics_rollup TO app_store_manager, app_regional_coordinator, app_admin;
    ELSE
        -- TimescaleDB: a view over continuous aggregates (no RLS on those): admins only
        GRANT SELECT ON performance_metrics_rollup TO app_admin;
    END IF;
END
$rollup$;

-- stores and users: applications see their own store/region and their own user row ---------------
ALTER TABLE stores ENABLE ROW LEVEL SECURITY;
CREATE POLICY stores_store_manager ON stores FOR SELECT TO app_store_manager
    USING (id = (SELECT app_current_store_id()));
CREATE POLICY stores_regional_read ON stores FOR SELECT TO app_regional_coordinator
    USING (region_id = (SELECT app_current_region_id()));
CREATE POLICY stores_admin ON stores FOR ALL TO app_admin USING (true) WITH CHECK (true);

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY users_self ON users FOR SELECT TO app_store_manager, app_regional_coordinator
    USING (id = (SELECT app_current_user_id()));
CREATE POLICY users_admin ON users FOR ALL TO app_admin USING (true) WITH CHECK (true);
