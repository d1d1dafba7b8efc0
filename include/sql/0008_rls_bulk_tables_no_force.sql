-- 0008: the bulk-loaded store tables are not FORCEd after all (changes 0004, which is applied already).
--
-- PostgreSQL refuses COPY FROM on a table whenever row-level security applies to the current role
-- ("COPY FROM not supported with row-level security"), and FORCE makes it apply to the owner too. The
-- pipelines (ingestion, mining, privacy) load transactions, local_patterns and privacy_applications
-- with COPY as the owner, so on these three tables the owner bypasses RLS again; every row they write
-- carries the store_id of the task, and application roles stay fully bound by the policies (the
-- data-access layer stages their bulk loads and INSERTs them, so the policies check every row).
--
-- Still FORCEd (the owner is held to app.current_store_id / app.current_region_id when it sets one):
-- transaction_files, mining_jobs, privacy_configs, round_participations.
ALTER TABLE transactions NO FORCE ROW LEVEL SECURITY;
ALTER TABLE local_patterns NO FORCE ROW LEVEL SECURITY;
ALTER TABLE privacy_applications NO FORCE ROW LEVEL SECURITY;
