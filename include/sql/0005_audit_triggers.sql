-- 0005: audit (spec 5.3 "Configuration Changes", "Pattern Sharing"). Triggers write activity_logs for
-- every change of server_configs and privacy_configs and every round_participations row (a federated
-- contribution), so nothing changes unaudited, even from psql. additional_data holds
--   {"table", "operation", "old": row|null, "new": row|null, "changed": {col: {"old", "new"}},
--    "actor": {"actor", "user_id", "app_role", "store_id", "region_id", "db_role", "session_user",
--              "application_name", "client_addr"}}
-- and for server_configs also "config_key", "old_value", "new_value".
-- actor = app.current_user_id when the session set it, otherwise the database role (e.g. psql).
-- activity_logs.user_id is set when app.current_user_id names an existing user.
--
-- The trigger functions are SECURITY DEFINER (owner) so that any role's change is logged whatever
-- that role may do on activity_logs; the acting database role is taken from SET ROLE / session_user,
-- because current_user inside a SECURITY DEFINER function is the owner.
-- What can still skip triggers: a superuser (session_replication_role = replica) and the owner
-- (ALTER TABLE ... DISABLE TRIGGER); both are outside the application's reach.

CREATE FUNCTION audit_db_role() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN current_setting('role') <> 'none' THEN current_setting('role')
                ELSE session_user::text END
$$;

CREATE FUNCTION audit_actor() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'actor', COALESCE(app_current_user_id()::text, audit_db_role()),
        'user_id', app_current_user_id(),
        'app_role', app_current_role(),
        'store_id', app_current_store_id(),
        'region_id', app_current_region_id(),
        'db_role', audit_db_role(),
        'session_user', session_user::text,
        'application_name', NULLIF(current_setting('application_name', true), ''),
        'client_addr', host(inet_client_addr())))
$$;

-- the existing user named by app.current_user_id, or NULL (foreign keys to users need a real row)
CREATE FUNCTION app_current_user_if_exists() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT u.id FROM public.users u WHERE u.id = public.app_current_user_id()
$$;

CREATE FUNCTION audit_row_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_old     jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END;
    v_new     jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END;
    v_row     jsonb := COALESCE(to_jsonb(NEW), to_jsonb(OLD));
    v_actor   jsonb := public.audit_actor();
    v_changed jsonb;
    v_data    jsonb;
    v_desc    text;
    v_store   uuid  := NULLIF(v_row ->> 'store_id', '')::uuid;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        SELECT COALESCE(jsonb_object_agg(n.key, jsonb_build_object('old', v_old -> n.key, 'new', n.value)), '{}'::jsonb)
          INTO v_changed
          FROM jsonb_each(v_new) n
         WHERE n.value IS DISTINCT FROM v_old -> n.key;
    END IF;
    v_data := jsonb_build_object('table', TG_TABLE_NAME, 'operation', TG_OP,
                                 'old', v_old, 'new', v_new, 'changed', v_changed, 'actor', v_actor);

    IF TG_TABLE_NAME = 'server_configs' THEN
        v_data := v_data || jsonb_build_object('config_key', v_row ->> 'config_key',
                                               'old_value', v_old ->> 'config_value',
                                               'new_value', v_new ->> 'config_value');
        v_desc := format('server_configs.%s %s by %s', v_row ->> 'config_key',
            CASE TG_OP WHEN 'INSERT' THEN format('created = %L', v_new ->> 'config_value')
                       WHEN 'UPDATE' THEN format('changed %L -> %L', v_old ->> 'config_value', v_new ->> 'config_value')
                       ELSE format('deleted (was %L)', v_old ->> 'config_value') END,
            v_actor ->> 'actor');
    ELSIF TG_TABLE_NAME = 'round_participations' THEN
        v_desc := format('store %s %s round %s (%s patterns, epsilon %s) by %s', v_store,
            CASE TG_OP WHEN 'INSERT' THEN 'contributed to' WHEN 'UPDATE' THEN 'contribution changed in'
                       ELSE 'contribution removed from' END,
            v_row ->> 'round_id', v_row ->> 'patterns_contributed', v_row ->> 'privacy_epsilon',
            v_actor ->> 'actor');
    ELSE
        v_desc := format('%s of store %s %s by %s', TG_TABLE_NAME, v_store,
            CASE TG_OP WHEN 'INSERT' THEN 'created' WHEN 'UPDATE' THEN 'changed' ELSE 'deleted' END,
            v_actor ->> 'actor');
    END IF;

    INSERT INTO public.activity_logs (user_id, store_id, action_type, action_description, resource_type,
                                      resource_id, ip_address, additional_data)
    VALUES (public.app_current_user_if_exists(), v_store, TG_ARGV[0], v_desc, TG_TABLE_NAME,
            NULLIF(v_row ->> 'id', '')::uuid, inet_client_addr(), v_data);
    RETURN NULL;
END
$$;

CREATE FUNCTION audit_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE v_actor jsonb := public.audit_actor();
BEGIN
    INSERT INTO public.activity_logs (user_id, action_type, action_description, resource_type, ip_address,
                                      additional_data)
    VALUES (public.app_current_user_if_exists(), TG_ARGV[0],
            format('%s truncated by %s', TG_TABLE_NAME, v_actor ->> 'actor'), TG_TABLE_NAME, inet_client_addr(),
            jsonb_build_object('table', TG_TABLE_NAME, 'operation', 'TRUNCATE', 'actor', v_actor));
    RETURN NULL;
END
$$;

-- attach the audit triggers to a table; other areas may call it for their own tables, e.g.
--   SELECT audit_table('privacy_budget_ledger', 'privacy_budget_charge');
CREATE FUNCTION audit_table(p_table regclass, p_action_type text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE v_rel name := (SELECT relname FROM pg_class WHERE oid = p_table);
BEGIN
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %s
                    FOR EACH ROW EXECUTE FUNCTION audit_row_change(%L)',
                   v_rel || '_audit', p_table, p_action_type);
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION audit_truncate(%L)',
                   v_rel || '_audit_truncate', p_table, p_action_type);
END
$$;
REVOKE EXECUTE ON FUNCTION audit_table(regclass, text) FROM PUBLIC;

SELECT audit_table('server_configs', 'config_change');
SELECT audit_table('privacy_configs', 'privacy_config_change');
SELECT audit_table('round_participations', 'federated_contribution');

-- server_configs.updated_at / updated_by -----------------------------------------------------------
-- updated_by = the session's user (app.current_user_id) when it is a known user; from psql (no
-- session user) an explicitly written updated_by is kept on UPDATE, otherwise it becomes NULL and the
-- database role is in the activity_logs row.
CREATE FUNCTION server_configs_stamp() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE v_user uuid := public.app_current_user_if_exists();
BEGIN
    NEW.updated_at := now();
    IF v_user IS NOT NULL THEN
        NEW.updated_by := v_user;
    ELSIF TG_OP = 'UPDATE' AND NEW.updated_by IS NOT DISTINCT FROM OLD.updated_by THEN
        NEW.updated_by := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER server_configs_stamp BEFORE INSERT OR UPDATE ON server_configs
    FOR EACH ROW EXECUTE FUNCTION server_configs_stamp();

-- updated_at of the other tables that have one ---------------------------------------------------
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER users_updated_at BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER stores_updated_at BEFORE UPDATE ON stores FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER privacy_configs_updated_at BEFORE UPDATE ON privacy_configs
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- activity_logs is append-only: rows are never edited (retention removes whole partitions/rows) -------
CREATE FUNCTION activity_logs_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'activity_logs is append-only: rows cannot be updated'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER activity_logs_append_only BEFORE UPDATE ON activity_logs
    FOR EACH ROW EXECUTE FUNCTION activity_logs_append_only();
