-- 0001: the spec's relational tables (spec sections 2.1-2.6), with the spec's names, types, defaults,
-- CHECKs, foreign keys and indexes, and the spec's six default server_configs rows, verbatim.
--
-- Not here (later migrations of issue 3):
--   0002  activity_logs, performance_metrics (spec 2.7): TimescaleDB or native partitioning
--   0003  indexes beyond the spec (foreign keys, lookups), uniqueness the workflow relies on
--   0004  application roles and row-level security
--   0005  audit triggers, updated_at / updated_by maintenance
--   0006  column encryption and password-hash columns/constraints
--   0007  platform settings other areas need (server_configs rows beyond the spec)
--
-- gen_random_uuid() is built into PostgreSQL 13+, so no extension is needed here (pgcrypto would be
-- "trusted" anyway and creatable by the owner role).

-- 2.1 User Management Tables ---------------------------------------------------------------------

-- Users table for authentication
CREATE TABLE users (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email VARCHAR(255) UNIQUE NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role VARCHAR(50) NOT NULL CHECK (role IN ('store_manager', 'regional_coordinator', 'admin')),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    last_login TIMESTAMPTZ,
    is_active BOOLEAN DEFAULT true
);

-- Store/Client information
CREATE TABLE stores (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    location VARCHAR(255),
    manager_id UUID REFERENCES users(id),
    region_id UUID,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    is_active BOOLEAN DEFAULT true
);

-- 2.2 Transaction Data Tables --------------------------------------------------------------------

-- Raw transaction files metadata
CREATE TABLE transaction_files (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id UUID REFERENCES stores(id) NOT NULL,
    filename VARCHAR(255) NOT NULL,
    file_size BIGINT NOT NULL,
    file_type VARCHAR(10) NOT NULL CHECK (file_type IN ('csv', 'json')),
    upload_timestamp TIMESTAMPTZ DEFAULT NOW(),
    processing_status VARCHAR(20) DEFAULT 'pending'
        CHECK (processing_status IN ('pending', 'processing', 'completed', 'failed')),
    error_message TEXT,
    s3_bucket VARCHAR(255),
    s3_key VARCHAR(500)
);

-- Processed transactions
CREATE TABLE transactions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id UUID REFERENCES stores(id) NOT NULL,
    file_id UUID REFERENCES transaction_files(id),
    transaction_date TIMESTAMPTZ DEFAULT NOW(),
    items TEXT[] NOT NULL, -- Array of item names
    quantities DECIMAL[] NOT NULL, -- Array of quantities
    unit_utilities DECIMAL[] NOT NULL, -- Array of unit utilities
    total_utility DECIMAL NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

-- Create index for efficient querying
CREATE INDEX idx_transactions_store_date ON transactions(store_id, transaction_date);
CREATE INDEX idx_transactions_total_utility ON transactions(total_utility);

-- 2.3 Pattern Mining Tables ----------------------------------------------------------------------

-- Local mining jobs
CREATE TABLE mining_jobs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id UUID REFERENCES stores(id) NOT NULL,
    status VARCHAR(20) DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    min_utility DECIMAL NOT NULL,
    min_support DECIMAL NOT NULL,
    max_pattern_length INTEGER DEFAULT 5,
    use_pruning BOOLEAN DEFAULT true,
    batch_size INTEGER DEFAULT 1000,
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    execution_time_seconds DECIMAL,
    memory_used_mb DECIMAL,
    patterns_found INTEGER DEFAULT 0,
    error_message TEXT
);

-- Local patterns discovered by stores
CREATE TABLE local_patterns (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    mining_job_id UUID REFERENCES mining_jobs(id) NOT NULL,
    store_id UUID REFERENCES stores(id) NOT NULL,
    pattern_items TEXT[] NOT NULL,
    utility DECIMAL NOT NULL,
    support DECIMAL NOT NULL,
    confidence DECIMAL NOT NULL,
    pattern_length INTEGER NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX idx_local_patterns_store ON local_patterns(store_id);
CREATE INDEX idx_local_patterns_utility ON local_patterns(utility DESC);

-- 2.4 Privacy Configuration Tables ---------------------------------------------------------------

-- Privacy settings per store
CREATE TABLE privacy_configs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id UUID REFERENCES stores(id) NOT NULL,
    epsilon DECIMAL NOT NULL DEFAULT 1.0,
    noise_type VARCHAR(20) DEFAULT 'laplace'
        CHECK (noise_type IN ('laplace', 'gaussian')),
    hash_patterns BOOLEAN DEFAULT false,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);

-- Privacy application history
CREATE TABLE privacy_applications (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id UUID REFERENCES stores(id) NOT NULL,
    pattern_id UUID REFERENCES local_patterns(id) NOT NULL,
    original_utility DECIMAL NOT NULL,
    noisy_utility DECIMAL NOT NULL,
    noise_added DECIMAL NOT NULL,
    epsilon_used DECIMAL NOT NULL,
    applied_at TIMESTAMPTZ DEFAULT NOW()
);

-- 2.5 Federated Learning Tables ------------------------------------------------------------------

-- Federated learning rounds
CREATE TABLE federated_rounds (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    round_number INTEGER NOT NULL,
    status VARCHAR(20) DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    min_clients_required INTEGER DEFAULT 2,
    participating_clients INTEGER DEFAULT 0,
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    duration_seconds DECIMAL,
    patterns_aggregated INTEGER DEFAULT 0,
    global_privacy_budget DECIMAL DEFAULT 1.0
);

-- Client participation in rounds
CREATE TABLE round_participations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    round_id UUID REFERENCES federated_rounds(id) NOT NULL,
    store_id UUID REFERENCES stores(id) NOT NULL,
    patterns_contributed INTEGER NOT NULL,
    contribution_timestamp TIMESTAMPTZ DEFAULT NOW(),
    privacy_epsilon DECIMAL NOT NULL
);

-- Global aggregated patterns
CREATE TABLE global_patterns (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    round_id UUID REFERENCES federated_rounds(id) NOT NULL,
    pattern_items TEXT[] NOT NULL,
    aggregated_utility DECIMAL NOT NULL,
    global_support DECIMAL NOT NULL,
    contributing_stores INTEGER NOT NULL,
    client_coverage_percent DECIMAL NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX idx_global_patterns_utility ON global_patterns(aggregated_utility DESC);
CREATE INDEX idx_global_patterns_round ON global_patterns(round_id);

-- 2.6 System Configuration Tables ----------------------------------------------------------------

-- Server-wide configuration
CREATE TABLE server_configs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    config_key VARCHAR(100) UNIQUE NOT NULL,
    config_value TEXT NOT NULL,
    data_type VARCHAR(20) NOT NULL CHECK (data_type IN ('string', 'number', 'boolean', 'json')),
    description TEXT,
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    updated_by UUID REFERENCES users(id)
);

-- Insert default configurations (the spec's rows and values, verbatim; 0 means "no platform-wide
-- setting": readers fall back to their own documented default, see docs/schema.md)
INSERT INTO server_configs (config_key, config_value, data_type, description) VALUES
('min_utility_threshold', '0', 'number', 'Global minimum utility threshold'),
('min_support_threshold', '0', 'number', 'Global minimum support threshold'),
('privacy_budget', '0', 'number', 'Global privacy budget'),
('min_clients_per_round', '0', 'number', 'Minimum clients required per round'),
('max_pattern_length', '0', 'number', 'Maximum pattern length allowed'),
('noise_level', '0', 'number', 'Additional noise level for aggregation');
