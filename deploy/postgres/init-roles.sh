#!/usr/bin/env bash
# Runs once, when the primary's data directory is created (docker-entrypoint-initdb.d).
# The schema's owner runs migrations; services and auditors get their rights from the migrations.
set -euo pipefail
secret() { tr -d '\n' < "/run/secrets/$1"; }
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v owner_pw="$(secret pg_owner_password)" \
  -v service_pw="$(secret pg_service_password)" \
  -v auditor_pw="$(secret pg_auditor_password)" \
  -v replicator_pw="$(secret pg_replicator_password)" <<'SQL'
CREATE ROLE caseloop_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_pw';
CREATE ROLE caseloop_service LOGIN NOSUPERUSER PASSWORD :'service_pw';
CREATE ROLE caseloop_auditor LOGIN NOSUPERUSER PASSWORD :'auditor_pw';
-- Each service's own role (0008_service_roles.sql grants them); give one LOGIN and a password to
-- point that service's DATABASE_URL at it instead of caseloop_service.
CREATE ROLE caseloop_intake NOLOGIN;
CREATE ROLE caseloop_routing NOLOGIN;
CREATE ROLE caseloop_handling NOLOGIN;
CREATE ROLE caseloop_verification NOLOGIN;
CREATE ROLE caseloop_relay NOLOGIN;
CREATE ROLE replicator LOGIN REPLICATION PASSWORD :'replicator_pw';
CREATE DATABASE caseloop OWNER caseloop_owner;
SQL
# Streaming replication for the standby (profile "ha").
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
