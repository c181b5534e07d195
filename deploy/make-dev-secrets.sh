#!/usr/bin/env bash
# Random development secrets for compose.yaml under deploy/secrets/ (kept out of git).
# DATABASE_URL lists the primary and the standby: asyncpg tries them in order and keeps the one
# that accepts writes (target_session_attrs=read-write), also after a failover.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p secrets && chmod 0700 secrets
rand() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
key() { python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'; }
for name in pg_superuser_password pg_owner_password pg_service_password pg_auditor_password \
            pg_replicator_password jwt_secret; do
  [ -s "secrets/$name" ] || rand > "secrets/$name"
done
# The checkpoint key is an Ed25519 seed: 32 random bytes, base64, like the other two keys.
for name in pii_key blind_index_key checkpoint_key; do
  [ -s "secrets/$name" ] || key > "secrets/$name"
done
hosts="postgres:5432,postgres-standby:5432/caseloop?target_session_attrs=read-write"
echo "postgresql://caseloop_service:$(cat secrets/pg_service_password)@$hosts" > secrets/database_url
echo "postgresql://caseloop_owner:$(cat secrets/pg_owner_password)@$hosts" > secrets/admin_database_url
# Bind-mounted as they are: readable by the containers' users (the folder stays 0700).
chmod 0644 secrets/*
echo "secrets written to $(pwd)/secrets"
