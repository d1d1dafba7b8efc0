-- 0700: access (issue 12). Who may act for which store: a store manager manages exactly one store
-- (stores.manager_id, at most one store per user), a regional coordinator coordinates exactly one
-- region (user_regions, one row per user). The bindings are checked against users.role here, so a
-- binding and a role can never disagree, whoever writes them (include/access, psql).
-- Settings of the platform API in server_configs (api_*). Documented in docs/access.md.

CREATE TABLE user_regions (
    user_id UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    region_id UUID NOT NULL,
    assigned_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON TABLE user_regions IS 'The one region a regional_coordinator coordinates (include/access).';
CREATE INDEX idx_user_regions_region ON user_regions (region_id);

-- a user manages at most one store
CREATE UNIQUE INDEX uq_stores_manager ON stores (manager_id) WHERE manager_id IS NOT NULL;

CREATE FUNCTION access_check_binding() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_user uuid := CASE TG_TABLE_NAME WHEN 'stores' THEN NEW.manager_id ELSE NEW.user_id END;
    v_need text := CASE TG_TABLE_NAME WHEN 'stores' THEN 'store_manager' ELSE 'regional_coordinator' END;
    v_role text;
BEGIN
    IF v_user IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT u.role INTO v_role FROM public.users u WHERE u.id = v_user;
    IF v_role IS DISTINCT FROM v_need THEN
        RAISE EXCEPTION '%: user % has role %, a % is required', TG_TABLE_NAME, v_user,
            COALESCE(v_role, '(no such user)'), v_need USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER stores_manager_role BEFORE INSERT OR UPDATE OF manager_id ON stores
    FOR EACH ROW EXECUTE FUNCTION access_check_binding();
CREATE TRIGGER user_regions_role BEFORE INSERT OR UPDATE ON user_regions
    FOR EACH ROW EXECUTE FUNCTION access_check_binding();

-- a role change must not leave a binding of the old role behind
CREATE FUNCTION access_check_role_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE v_store uuid;
BEGIN
    IF NEW.role <> 'store_manager' THEN
        SELECT s.id INTO v_store FROM public.stores s WHERE s.manager_id = NEW.id LIMIT 1;
        IF v_store IS NOT NULL THEN
            RAISE EXCEPTION 'user % manages store %: unassign the store before changing the role to %',
                NEW.id, v_store, NEW.role USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF NEW.role <> 'regional_coordinator' AND EXISTS (SELECT 1 FROM public.user_regions r WHERE r.user_id = NEW.id) THEN
        RAISE EXCEPTION 'user % coordinates a region: remove it before changing the role to %', NEW.id, NEW.role
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER users_role_bindings BEFORE UPDATE OF role ON users
    FOR EACH ROW EXECUTE FUNCTION access_check_role_change();

ALTER TABLE user_regions ENABLE ROW LEVEL SECURITY;
CREATE POLICY user_regions_self ON user_regions FOR SELECT TO app_regional_coordinator
    USING (user_id = (SELECT app_current_user_id()));
CREATE POLICY user_regions_admin ON user_regions FOR ALL TO app_admin USING (true) WITH CHECK (true);
GRANT SELECT ON user_regions TO app_regional_coordinator;
GRANT SELECT, INSERT, UPDATE, DELETE ON user_regions TO app_admin;

INSERT INTO server_configs (config_key, config_value, data_type, description) VALUES
('api_max_upload_mb', '100', 'number', 'Platform API: largest transaction file accepted by an upload (MB)'),
('api_token_ttl_seconds', '3600', 'number', 'Platform API: lifetime of a token issued by POST /platform/v1/auth/token'),
('api_login_max_failures', '5', 'number',
 'Platform API: failed logins of one account (or 4x this from one IP) before logins are refused for a while'),
('api_login_lockout_seconds', '900', 'number', 'Platform API: window of the failed-login count and length of the refusal')
ON CONFLICT (config_key) DO NOTHING;
