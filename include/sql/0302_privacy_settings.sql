-- 0302: privacy settings (issue 7). 0007 seeded placeholders for l and C; replace them with the defaults
-- of the calibration in the research brief (l = p95 basket length = 12, C ~ p99 transaction utility
-- = 200.00) unless an environment already tuned them. `python -m include.privacy suggest` derives
-- data-based values; see docs/privacy.md.
UPDATE server_configs SET config_value = '12'
 WHERE config_key = 'privacy_max_items_per_transaction' AND config_value = '32';
UPDATE server_configs SET config_value = '200'
 WHERE config_key = 'privacy_max_transaction_utility' AND config_value = '10000';

INSERT INTO server_configs (config_key, config_value, data_type, description) VALUES
('privacy_utility_scale', '100', 'number',
 'Fixed-point units per currency unit for DP releases (100 = cents)'),
('privacy_noise_split', '{"utility": 0.6, "support": 0.3, "presence": 0.1}', 'json',
 'Share of a release''s budget (epsilon or rho) spent on each released vector'),
('privacy_threshold_delta_share', '0.1', 'number',
 'Open-domain releases (threshold mechanism): share of the platform delta a release may use')
ON CONFLICT (config_key) DO NOTHING;
