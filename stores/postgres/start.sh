#!/bin/bash
# A fresh PostgreSQL cluster for one run, then the server in the foreground (exec: it is
# PID 1's only process, so SIGINT from `docker stop` reaches it).
#
# One role and one database, both `hscale`, reachable from the backend network only with
# the run's password (POSTGRES_PASSWORD: from the environment, never in the image or a
# file). No superuser login at all: the role and database are made in single-user mode
# before the server listens. The arguments ("-c key=value" settings) are passed to the
# server: docker-compose.yml lists them, the same as the local runtime's.
set -euo pipefail

: "${POSTGRES_PASSWORD:?is required (the password of this run)}"
# It goes into one SQL literal below: refuse anything that could end it.
if [[ ! $POSTGRES_PASSWORD =~ ^[A-Za-z0-9_.-]+$ ]]; then
    echo "hscale-postgres: POSTGRES_PASSWORD must match [A-Za-z0-9_.-]+" >&2
    exit 2
fi

data=/tmp/pgdata
initdb -D "$data" --no-sync --no-locale -E UTF8 -U postgres --auth=reject >/dev/null
printf "CREATE ROLE hscale LOGIN PASSWORD '%s';\nCREATE DATABASE hscale OWNER hscale;\n" \
    "$POSTGRES_PASSWORD" | postgres --single -D "$data" -c fsync=off postgres >/dev/null
echo "host hscale hscale all scram-sha-256" > "$data/pg_hba.conf"

exec postgres -D "$data" -k /tmp -c listen_addresses='*' "$@"
