-- 0002: the spec's time-series tables (spec 2.7) activity_logs and performance_metrics, on TimescaleDB
-- where the extension can be used, and on native monthly range partitioning otherwise, plus the
-- aggregated-metrics store the retention rules need (spec 4.1: detail 6 months, aggregates 2 years).
--
-- Fixes to the spec's SQL (it cannot work as written):
--   * A hypertable, like a natively partitioned table, needs the time column in every unique index, so
--     the primary keys are (id, created_at) and (id, recorded_at) instead of (id). id stays a random
--     UUID with the spec's default, and stays unique in practice (gen_random_uuid).
--   * Being part of the primary key makes created_at / recorded_at NOT NULL (their default NOW() is
--     kept, so an INSERT that omits them behaves as in the spec).
--   * create_hypertable() only exists with TimescaleDB, which needs shared_preload_libraries and a
--     superuser to install. The extension is used only if it is installed already or can be created by
--     the role that runs the migrations; otherwise the native path is taken. The path taken is
--     RAISEd as a NOTICE (the migration runner logs it) and reported by timeseries_backend().
--
-- Objects common to both paths (so DAGs call the same things everywhere):
--   timeseries_backend()                                   'timescaledb' | 'native'
--   timeseries_partitions(table)                           partitions/chunks with their time range
--   timeseries_create_partitions(table, from, to)          monthly partitions covering [from, to)
--   timeseries_maintain(months_back, months_ahead)         partitions ahead + rollup refresh (nightly)
--   timeseries_drop_partitions_before(table, cutoff)       drop partitions/chunks entirely before cutoff
--   performance_metrics_rollup                              hourly and daily aggregates (table or view)
--   performance_metrics_rollup_refresh(from, to)           recompute the rollup (native; no-op on TSDB)
--   performance_metrics_rollup_purge(cutoff)               delete aggregates before cutoff (native)

DO $timeseries$
DECLARE
    v_backend text := 'native';
    v_reason  text;
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb') THEN
        v_backend := 'timescaledb';
        v_reason := 'extension timescaledb is installed in this database';
    ELSIF EXISTS (SELECT FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
            v_backend := 'timescaledb';
            v_reason := 'extension timescaledb created by this migration';
        EXCEPTION WHEN OTHERS THEN
            v_reason := format('timescaledb is available but cannot be created by role %s (%s)',
                               current_user, SQLERRM);
        END;
    ELSE
        v_reason := 'timescaledb is not available on this server (pg_available_extensions)';
    END IF;

    -- the two tables: identical columns on both paths ------------------------------------------
    EXECUTE format($ddl$
        CREATE TABLE activity_logs (
            id UUID NOT NULL DEFAULT gen_random_uuid(),
            user_id UUID REFERENCES users(id),
            store_id UUID REFERENCES stores(id),
            action_type VARCHAR(50) NOT NULL,
            action_description TEXT NOT NULL,
            resource_type VARCHAR(50),
            resource_id UUID,
            ip_address INET,
            user_agent TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            additional_data JSONB,
            PRIMARY KEY (id, created_at)
        ) %s $ddl$, CASE WHEN v_backend = 'native' THEN 'PARTITION BY RANGE (created_at)' ELSE '' END);

    EXECUTE format($ddl$
        CREATE TABLE performance_metrics (
            id UUID NOT NULL DEFAULT gen_random_uuid(),
            metric_type VARCHAR(50) NOT NULL,
            metric_name VARCHAR(100) NOT NULL,
            metric_value DECIMAL NOT NULL,
            store_id UUID REFERENCES stores(id),
            round_id UUID REFERENCES federated_rounds(id),
            recorded_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            metadata JSONB,
            PRIMARY KEY (id, recorded_at)
        ) %s $ddl$, CASE WHEN v_backend = 'native' THEN 'PARTITION BY RANGE (recorded_at)' ELSE '' END);

    IF v_backend = 'timescaledb' THEN
        -- TimescaleDB path (docker-compose stack). Not exercised on this machine; kept in step with
        -- the native path by the same function signatures.
        PERFORM create_hypertable('activity_logs', 'created_at', chunk_time_interval => INTERVAL '7 days');
        PERFORM create_hypertable('performance_metrics', 'recorded_at', chunk_time_interval => INTERVAL '7 days');

        -- compression: unique-index columns must be in segmentby/orderby
        ALTER TABLE activity_logs SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'store_id',
            timescaledb.compress_orderby = 'created_at DESC, id');
        ALTER TABLE performance_metrics SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'metric_type, metric_name',
            timescaledb.compress_orderby = 'recorded_at DESC, id');
        PERFORM add_compression_policy('activity_logs', INTERVAL '30 days', if_not_exists => true);
        PERFORM add_compression_policy('performance_metrics', INTERVAL '30 days', if_not_exists => true);

        -- aggregates kept 2 years while detail is kept 6 months (spec 4.1)
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW performance_metrics_hourly WITH (timescaledb.continuous) AS
            SELECT time_bucket(INTERVAL '1 hour', recorded_at) AS bucket_start,
                   metric_type, metric_name, store_id, round_id,
                   count(*)::bigint AS sample_count, sum(metric_value) AS sum_value,
                   min(metric_value) AS min_value, max(metric_value) AS max_value
              FROM performance_metrics
             GROUP BY 1, 2, 3, 4, 5
            WITH NO DATA $cagg$;
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW performance_metrics_daily WITH (timescaledb.continuous) AS
            SELECT time_bucket(INTERVAL '1 day', recorded_at) AS bucket_start,
                   metric_type, metric_name, store_id, round_id,
                   count(*)::bigint AS sample_count, sum(metric_value) AS sum_value,
                   min(metric_value) AS min_value, max(metric_value) AS max_value
              FROM performance_metrics
             GROUP BY 1, 2, 3, 4, 5
            WITH NO DATA $cagg$;
        -- refresh windows stay far inside the 6-month detail retention, so a refresh never sees a
        -- dropped chunk (which would erase materialized aggregates)
        PERFORM add_continuous_aggregate_policy('performance_metrics_hourly',
            start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
            schedule_interval => INTERVAL '1 hour', if_not_exists => true);
        PERFORM add_continuous_aggregate_policy('performance_metrics_daily',
            start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 day',
            schedule_interval => INTERVAL '1 day', if_not_exists => true);
        PERFORM add_retention_policy('performance_metrics', INTERVAL '6 months', if_not_exists => true);
        PERFORM add_retention_policy('performance_metrics_hourly', INTERVAL '2 years', if_not_exists => true);
        PERFORM add_retention_policy('performance_metrics_daily', INTERVAL '2 years', if_not_exists => true);
        -- activity_logs: the retention DAG archives rows older than 1 year and then drops their chunks
        -- (timeseries_drop_partitions_before). This policy is only a backstop a month later, so a
        -- stalled archive run does not let the table grow forever.
        PERFORM add_retention_policy('activity_logs', INTERVAL '13 months', if_not_exists => true);

        EXECUTE $view$
            CREATE VIEW performance_metrics_rollup AS
            SELECT 'hour'::varchar(10) AS bucket_width, bucket_start, metric_type, metric_name, store_id,
                   round_id, sample_count, sum_value, min_value, max_value,
                   sum_value / NULLIF(sample_count, 0) AS avg_value
              FROM performance_metrics_hourly
            UNION ALL
            SELECT 'day'::varchar(10), bucket_start, metric_type, metric_name, store_id,
                   round_id, sample_count, sum_value, min_value, max_value,
                   sum_value / NULLIF(sample_count, 0)
              FROM performance_metrics_daily $view$;
    ELSE
        -- native path: monthly range partitions (created below by timeseries_create_partitions) and a
        -- DEFAULT partition so that a row outside every partition is kept, never rejected
        CREATE TABLE activity_logs_default PARTITION OF activity_logs DEFAULT;
        CREATE TABLE performance_metrics_default PARTITION OF performance_metrics DEFAULT;

        CREATE TABLE performance_metrics_rollup (
            bucket_width VARCHAR(10) NOT NULL CHECK (bucket_width IN ('hour', 'day')),
            bucket_start TIMESTAMPTZ NOT NULL,
            metric_type VARCHAR(50) NOT NULL,
            metric_name VARCHAR(100) NOT NULL,
            store_id UUID,
            round_id UUID,
            sample_count BIGINT NOT NULL,
            sum_value DECIMAL NOT NULL,
            min_value DECIMAL NOT NULL,
            max_value DECIMAL NOT NULL,
            avg_value DECIMAL GENERATED ALWAYS AS (sum_value / NULLIF(sample_count, 0)) STORED,
            refreshed_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
        );
        -- one row per bucket and series; NULL store/round are one series (works on PostgreSQL 14 too,
        -- unlike NULLS NOT DISTINCT)
        CREATE UNIQUE INDEX uq_performance_metrics_rollup ON performance_metrics_rollup (
            bucket_width, bucket_start, metric_type, metric_name,
            COALESCE(store_id, '00000000-0000-0000-0000-000000000000'::uuid),
            COALESCE(round_id, '00000000-0000-0000-0000-000000000000'::uuid));
        CREATE INDEX idx_performance_metrics_rollup_store
            ON performance_metrics_rollup (store_id, bucket_width, bucket_start);
    END IF;

    RAISE NOTICE 'timeseries backend: % (%)',
        CASE v_backend WHEN 'native' THEN 'native monthly range partitioning' ELSE 'timescaledb hypertables' END,
        v_reason;
END
$timeseries$;

-- indexes of both paths (on a partitioned table they cascade to every partition)
CREATE INDEX idx_activity_logs_created ON activity_logs (created_at DESC);
CREATE INDEX idx_activity_logs_store_created ON activity_logs (store_id, created_at DESC);
CREATE INDEX idx_activity_logs_resource ON activity_logs (resource_type, resource_id);
CREATE INDEX idx_activity_logs_action_created ON activity_logs (action_type, created_at DESC);
CREATE INDEX idx_performance_metrics_name_recorded ON performance_metrics (metric_type, metric_name, recorded_at DESC);
CREATE INDEX idx_performance_metrics_store_recorded ON performance_metrics (store_id, recorded_at DESC);
CREATE INDEX idx_performance_metrics_round ON performance_metrics (round_id) WHERE round_id IS NOT NULL;

-- ---------------------------------------------------------------------------------------------------
-- Functions (both paths)

CREATE FUNCTION timeseries_backend() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN EXISTS (SELECT FROM pg_partitioned_table
                              WHERE partrelid = to_regclass('activity_logs'))
                THEN 'native' ELSE 'timescaledb' END
$$;
COMMENT ON FUNCTION timeseries_backend() IS
    'Which time-series path migration 0002 took: native (monthly range partitions) or timescaledb.';

CREATE FUNCTION timeseries_check_table(p_table text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_table NOT IN ('activity_logs', 'performance_metrics') THEN
        RAISE EXCEPTION 'not a time-series table: % (expected activity_logs or performance_metrics)', p_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN CASE p_table WHEN 'activity_logs' THEN 'created_at' ELSE 'recorded_at' END;
END
$$;

-- partitions (native) or chunks (timescaledb) of a table, with their time range; the DEFAULT partition
-- has NULL bounds
CREATE FUNCTION timeseries_partitions(p_table text)
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz, is_default boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM timeseries_check_table(p_table);
    IF timeseries_backend() = 'timescaledb' THEN
        RETURN QUERY EXECUTE
            'SELECT format(''%I.%I'', chunk_schema, chunk_name), range_start, range_end, false
               FROM timescaledb_information.chunks WHERE hypertable_name = $1 ORDER BY range_start'
            USING p_table;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT c.relname::text,
           CASE WHEN c.relname ~ '_p[0-9]{6}$'
                THEN (to_date(right(c.relname, 6), 'YYYYMM')::timestamp AT TIME ZONE 'UTC') END,
           CASE WHEN c.relname ~ '_p[0-9]{6}$'
                THEN ((to_date(right(c.relname, 6), 'YYYYMM') + INTERVAL '1 month')::timestamp AT TIME ZONE 'UTC') END,
           pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = p_table::regclass
     ORDER BY 4, 2;
END
$$;

-- create the monthly partitions (UTC months) that cover [p_from, p_to); rows already sitting in the
-- DEFAULT partition for such a month are moved into the new partition. Returns the partitions created.
CREATE FUNCTION timeseries_create_partitions(p_table text, p_from timestamptz, p_to timestamptz)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    v_col   text := timeseries_check_table(p_table);
    v_month date;
    v_name  text;
    v_lo    timestamptz;
    v_hi    timestamptz;
    v_moved bigint;
BEGIN
    IF timeseries_backend() = 'timescaledb' THEN
        RETURN;   -- chunks are created by TimescaleDB on insert
    END IF;
    v_month := date_trunc('month', p_from AT TIME ZONE 'UTC')::date;
    WHILE (v_month::timestamp AT TIME ZONE 'UTC') < p_to LOOP
        v_name := format('%s_p%s', p_table, to_char(v_month, 'YYYYMM'));
        v_lo := v_month::timestamp AT TIME ZONE 'UTC';
        v_hi := (v_month + INTERVAL '1 month')::timestamp AT TIME ZONE 'UTC';
        IF to_regclass(v_name) IS NULL THEN
            EXECUTE format('SELECT count(*) FROM %I WHERE %I >= $1 AND %I < $2',
                           p_table || '_default', v_col, v_col)
               INTO v_moved USING v_lo, v_hi;
            IF v_moved = 0 THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               v_name, p_table, v_lo, v_hi);
            ELSE
                -- a partition cannot be created while the DEFAULT partition holds rows of its range
                EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                               v_name, p_table);
                EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= $1 AND %I < $2 RETURNING *)
                                INSERT INTO %I SELECT * FROM moved',
                               p_table || '_default', v_col, v_col, v_name) USING v_lo, v_hi;
                EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                               p_table, v_name, v_lo, v_hi);
                RAISE NOTICE 'partition % created, % rows moved from %_default', v_name, v_moved, p_table;
            END IF;
            RETURN NEXT v_name;
        END IF;
        v_month := (v_month + INTERVAL '1 month')::date;
    END LOOP;
END
$$;

-- drop every partition (native) or chunk (timescaledb) that lies entirely before p_cutoff, and delete
-- rows of the DEFAULT partition before p_cutoff. Archive first: this destroys data. Returns what was
-- dropped ("<partition>" or "<table>_default: N rows").
CREATE FUNCTION timeseries_drop_partitions_before(p_table text, p_cutoff timestamptz)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    v_col text := timeseries_check_table(p_table);
    r     record;
    v_n   bigint;
BEGIN
    IF timeseries_backend() = 'timescaledb' THEN
        RETURN QUERY EXECUTE 'SELECT drop_chunks($1::regclass, older_than => $2)::text'
            USING p_table, p_cutoff;
        RETURN;
    END IF;
    FOR r IN SELECT * FROM timeseries_partitions(p_table) LOOP
        IF NOT r.is_default AND r.range_end IS NOT NULL AND r.range_end <= p_cutoff THEN
            EXECUTE format('DROP TABLE %I', r.partition_name);
            RETURN NEXT r.partition_name;
        END IF;
    END LOOP;
    EXECUTE format('DELETE FROM %I WHERE %I < $1', p_table || '_default', v_col) USING p_cutoff;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        RETURN NEXT format('%s_default: %s rows', p_table, v_n);
    END IF;
END
$$;

-- recompute the hourly and daily aggregates of whole UTC days overlapping [p_from, p_to); idempotent
CREATE FUNCTION performance_metrics_rollup_refresh(
    p_from timestamptz DEFAULT now() - INTERVAL '2 days', p_to timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_lo timestamptz := date_trunc('day', p_from AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    v_hi timestamptz := (date_trunc('day', p_to AT TIME ZONE 'UTC') + INTERVAL '1 day') AT TIME ZONE 'UTC';
    v_n  bigint;
BEGIN
    IF timeseries_backend() = 'timescaledb' THEN
        RAISE NOTICE 'performance_metrics_rollup is maintained by continuous aggregate policies';
        RETURN 0;
    END IF;
    DELETE FROM performance_metrics_rollup WHERE bucket_start >= v_lo AND bucket_start < v_hi;
    INSERT INTO performance_metrics_rollup (bucket_width, bucket_start, metric_type, metric_name,
                                            store_id, round_id, sample_count, sum_value, min_value, max_value)
    SELECT w.width,
           date_trunc(w.width, m.recorded_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           m.metric_type, m.metric_name, m.store_id, m.round_id,
           count(*), sum(m.metric_value), min(m.metric_value), max(m.metric_value)
      FROM performance_metrics m CROSS JOIN (VALUES ('hour'), ('day')) AS w(width)
     WHERE m.recorded_at >= v_lo AND m.recorded_at < v_hi
     GROUP BY 1, 2, 3, 4, 5, 6;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

CREATE FUNCTION performance_metrics_rollup_purge(p_cutoff timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_n bigint;
BEGIN
    IF timeseries_backend() = 'timescaledb' THEN
        RAISE NOTICE 'continuous aggregates are purged by their retention policies';
        RETURN 0;
    END IF;
    DELETE FROM performance_metrics_rollup WHERE bucket_start < p_cutoff;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

-- nightly maintenance: partitions from p_months_back months ago to p_months_ahead months ahead, and
-- the rollup of the last two days. Returns the partitions created.
CREATE FUNCTION timeseries_maintain(p_months_back integer DEFAULT 1, p_months_ahead integer DEFAULT 3)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    v_from timestamptz := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                          - make_interval(months => p_months_back);
    v_to   timestamptz := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                          + make_interval(months => p_months_ahead + 1);
BEGIN
    RETURN QUERY SELECT timeseries_create_partitions('activity_logs', v_from, v_to);
    RETURN QUERY SELECT timeseries_create_partitions('performance_metrics', v_from, v_to);
    PERFORM performance_metrics_rollup_refresh();
END
$$;

-- maintenance functions are for the owner (migrations, retention DAG), not for application roles
REVOKE EXECUTE ON FUNCTION timeseries_create_partitions(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION timeseries_drop_partitions_before(text, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION timeseries_maintain(integer, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION performance_metrics_rollup_refresh(timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION performance_metrics_rollup_purge(timestamptz) FROM PUBLIC;

-- partitions for the current month, one month back and three ahead (native path; no-op otherwise)
SELECT count(*) AS partitions_created FROM timeseries_maintain(1, 3);
