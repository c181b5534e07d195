#!/usr/bin/env bash
# The synchronous standby (profile "ha"): a base backup of the primary on first start, then
# a hot standby streaming from it.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  export PGPASSWORD="$(tr -d '\n' < /run/secrets/pg_replicator_password)"
  until pg_basebackup -h postgres -U replicator -D "$PGDATA" -R -X stream; do
    echo "waiting for the primary"; sleep 2; rm -rf "${PGDATA:?}"/*
  done
  chmod 0700 "$PGDATA"
fi
# cluster_name is the application_name the primary sees: synchronous_standby_names names it.
exec postgres -c hot_standby=on -c cluster_name=standby1
