#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL cluster and removes the cluster after.
#
#   scripts/with-postgres.sh CMD [ARGS...]
#
# The cluster lives in a temporary folder, listens on 127.0.0.1 on a free port with
# trust authentication, and is told to the command through ILS_TEST_POSTGRES_URL
# (an admin URL; tests create and drop their own databases). When that variable is
# already set, the command runs against the server it names and nothing is started.
set -euo pipefail

if [ -n "${ILS_TEST_POSTGRES_URL:-}" ]; then
    exec "$@"
fi

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bindir" ]; then
    echo "with-postgres: no PostgreSQL server binaries under /usr/lib/postgresql" >&2
    exit 1
fi

dir=$(mktemp -d /tmp/ils-pg.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# initdb refuses to run as root; run the server as the postgres user then.
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$dir"
    as_owner=(runuser -u postgres --)
fi

# From /, so that the postgres user is not refused our working folder.
as_pg() { (cd / && "${as_owner[@]}" "$@"); }

stop() {
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT

as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }

export ILS_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
export ILS_TEST_REQUIRE_POSTGRES=1
echo "with-postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
set +e
"$@"
status=$?
set -e
exit $status
