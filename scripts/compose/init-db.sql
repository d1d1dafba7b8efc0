-- First start of the compose PostgreSQL (TimescaleDB image): the roles and databases the
-- local stack creates in scripts/services.sh, with the credentials of airflow_settings.yaml.
CREATE ROLE platform LOGIN CREATEROLE CREATEDB PASSWORD 'platform';
CREATE ROLE airflow LOGIN PASSWORD 'airflow';
CREATE DATABASE platform OWNER platform;
CREATE DATABASE airflow OWNER airflow;
\connect platform
CREATE EXTENSION IF NOT EXISTS pgcrypto;
-- TimescaleDB is preloaded in this image; the platform's migrations detect it and use
-- hypertables, compression, retention policies and continuous aggregates.
CREATE EXTENSION IF NOT EXISTS timescaledb;
