#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the Optuna RDB-storage test (tests/test_search_postgres.py).
#
#   eval "$(.ci/postgres.sh start)"   # prints `export STUDY_TEST_PG_URL=...` (or STUDY_TEST_PG_SKIP=<why>)
#   .ci/postgres.sh stop "$STUDY_TEST_PG_DATA"
#
# Uses Debian's `postgresql` package, installing it with apt-get when it is missing and we are root.
# Nothing here ever fails the caller: where the server cannot start, the reason goes into
# STUDY_TEST_PG_SKIP and the test is skipped with it. Diagnostics go to stderr.
set -uo pipefail

skip() {
    printf 'export STUDY_TEST_PG_SKIP=%q\n' "$1"
    echo "postgres: $1" >&2
    exit 0
}

as_owner() {  # initdb and postgres refuse to run as root: run them as the `postgres` user then
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

start() {
    local bin
    bin=$(pg_bin)
    if [ -z "$bin" ]; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            skip "PostgreSQL is not installed and cannot be installed here (needs root and apt-get)"
        fi
        echo "postgres: installing Debian's postgresql package" >&2
        if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 \
            || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2; }; }; then
            skip "apt-get could not install postgresql (no package index or no network?)"
        fi
        bin=$(pg_bin)
        [ -n "$bin" ] || skip "the postgresql package installed no server binaries"
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        skip "running as root but there is no 'postgres' user to run the server as"
    fi

    local data port password
    data=$(mktemp -d /tmp/study-pg.XXXXXX) || skip "cannot create a data directory under /tmp"
    [ "$(id -u)" = 0 ] && chown postgres: "$data"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    printf '%s\n' "$password" >"$data.pw"
    [ "$(id -u)" = 0 ] && chown postgres: "$data.pw"

    as_owner "$bin/initdb" -D "$data/db" -U study --pwfile="$data.pw" -A scram-sha-256 >&2 \
        || skip "initdb failed (see above)"
    rm -f "$data.pw"
    as_owner "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $data" start >&2 \
        || skip "the server did not start: $(tail -n 3 "$data/server.log" 2>/dev/null | tr '\n' ' ')"
    PGPASSWORD=$password "$bin/createdb" -h 127.0.0.1 -p "$port" -U study study_test >&2 \
        || skip "createdb failed on the started server"

    echo "export STUDY_TEST_PG_URL=postgresql://study:$password@127.0.0.1:$port/study_test"
    echo "export STUDY_TEST_PG_DATA=$data"
    echo "postgres: server running on 127.0.0.1:$port (data in $data)" >&2
}

stop() {
    local data=${1:-}
    [ -n "$data" ] && [ -d "$data/db" ] || return 0
    as_owner "$(pg_bin)/pg_ctl" -D "$data/db" -m fast -w stop >&2 || true
    rm -rf "$data"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *) echo "usage: $0 start | stop DATA_DIR" >&2; exit 2 ;;
esac
