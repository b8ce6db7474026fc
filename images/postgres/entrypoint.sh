#!/bin/bash
# PostgreSQL 15 for the local fleet. On first start (no $PGDATA/PG_VERSION): initdb as the
# postgres user with superuser POSTGRES_USER / POSTGRES_PASSWORD (scram-sha-256 for every host
# connection, trust only on the container-local socket), a database POSTGRES_DB owned by that
# user, listen_addresses='*'. Then execs postgres (as postgres) in the foreground.
# Settings favour a quick start of many small test databases over durability (fsync=off).
set -euo pipefail

log() { printf 'pixel-postgres: %s\n' "$*" >&2; }

PGBIN=
for d in /usr/lib/postgresql/*/bin; do PGBIN=$d; done # the newest (glob order; there is one)
[ -x "$PGBIN/postgres" ] || { log "no postgres under /usr/lib/postgresql"; exit 1; }
export PATH="$PGBIN:$PATH"
export PGDATA=${PGDATA:-/var/lib/postgresql/data}
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    log "POSTGRES_PASSWORD is not set (the compose file's env_file should provide it)"
    exit 1
fi

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 0700 "$PGDATA"
chmod 2775 /run/postgresql

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    log "initdb $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
    pwfile=$(mktemp /tmp/pwfile.XXXXXX)
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    as_postgres initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
        --no-sync >/dev/null
    rm -f "$pwfile"
    trap - EXIT
    cat >>"$PGDATA/postgresql.conf" <<'CONF'

# pixel-postgres (local fleet)
listen_addresses = '*'
password_encryption = 'scram-sha-256'
jit = off
max_connections = 30
shared_buffers = 16MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        ident=${POSTGRES_DB//\"/\"\"}
        owner=${POSTGRES_USER//\"/\"\"}
        out=$(echo "CREATE DATABASE \"$ident\" OWNER \"$owner\"" |
            as_postgres postgres --single -D "$PGDATA" -c jit=off postgres 2>&1) || true
        if printf '%s' "$out" | grep -q 'ERROR'; then
            printf '%s\n' "$out" >&2
            log "CREATE DATABASE failed"
            exit 1
        fi
    fi
    log "initdb done"
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups -- postgres -D "$PGDATA"
