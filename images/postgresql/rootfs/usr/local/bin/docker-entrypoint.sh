#!/bin/sh
# Entrypoint of qhub/postgresql, following the upstream postgres image's contract as far as QHub's chart uses it:
# when $PGDATA holds no cluster yet, create one owned by the running uid with superuser $POSTGRES_USER (default
# postgres) and password $POSTGRES_PASSWORD (required), create database $POSTGRES_DB (default: the user's name),
# and let clients on other pods in with that password (scram-sha-256; no login without a password, not even on
# the local socket). Then run the command (`postgres`; arguments starting with `-` are passed to postgres).
set -eu

if [ "${1#-}" != "${1:-}" ]; then
  set -- postgres "$@"
fi

if [ "${1:-}" = postgres ] && [ ! -s "${PGDATA:?PGDATA must name the data directory}/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "docker-entrypoint.sh: POSTGRES_PASSWORD is empty: set it to the superuser's password" >&2
    exit 1
  fi
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  umask 077
  mkdir -p "$PGDATA"
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >&2 || { rm -f "$pwfile"; exit 1; }
  rm -f "$pwfile"
  # initdb admits loopback only: listen on the pod's address and admit every host with the password
  printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
  printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    quoted=$(printf '%s' "$db" | sed 's/"/""/g')
    # single-user mode: no server, no login, nothing listening while the database is made
    printf 'CREATE DATABASE "%s";\n' "$quoted" | postgres --single -j -D "$PGDATA" postgres >/dev/null
  fi
  echo "docker-entrypoint.sh: initialised $PGDATA (user $user, database $db)" >&2
fi

exec "$@"
