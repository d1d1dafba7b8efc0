-- 0701: fixes access_check_binding() of 0700, which named NEW.user_id / NEW.manager_id in one CASE:
-- PL/pgSQL resolves both fields whichever table fired it, so every INSERT into stores (and
-- user_regions) failed with 'record "new" has no field ...'. The column is now read by name from the
-- row as JSON. (0700 is applied and stays as it is.)
CREATE OR REPLACE FUNCTION access_check_binding() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_user uuid := (to_jsonb(NEW) ->> CASE TG_TABLE_NAME WHEN 'stores' THEN 'manager_id' ELSE 'user_id' END)::uuid;
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
