# Throwaway PostgreSQL cluster for tests and benchmarks. Source, then call
# pg_start (exports DATABASE_URL) and pg_stop. As root, the server runs as the
# `postgres` user (initdb refuses root).

pg_find_bin() {
  for dir in "" /usr/local/bin /usr/lib/postgresql/*/bin; do
    if [ -z "$dir" ]; then command -v initdb >/dev/null 2>&1 && return 0
    elif [ -x "$dir/initdb" ]; then PATH="$dir:$PATH"; export PATH; return 0; fi
  done
  echo "PostgreSQL server binaries (initdb, pg_ctl) not found; installing postgresql from Debian" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  for dir in /usr/lib/postgresql/*/bin; do [ -x "$dir/initdb" ] && PATH="$dir:$PATH" && export PATH && return 0; done
  echo "could not find initdb after installing postgresql" >&2
  return 1
}

pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env PATH="$PATH" "$@"; else "$@"; fi
}

pg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_start() {
  pg_find_bin || return 1
  PG_TMP=$(mktemp -d /tmp/vodkms-pg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$PG_TMP"
  fi
  PG_PORT=$(pg_free_port)
  pg_as_owner initdb -D "$PG_TMP/data" -U postgres -A trust -E UTF8 --no-sync >"$PG_TMP/initdb.log" 2>&1 \
    || { cat "$PG_TMP/initdb.log" >&2; return 1; }
  # Durability is irrelevant for a throwaway cluster; speed is not.
  pg_as_owner pg_ctl -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_TMP -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
    start >/dev/null || { cat "$PG_TMP/server.log" >&2; return 1; }
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "throwaway PostgreSQL on 127.0.0.1:$PG_PORT ($PG_TMP)" >&2
}

pg_stop() {
  [ -n "${PG_TMP:-}" ] || return 0
  pg_as_owner pg_ctl -D "$PG_TMP/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_TMP"
  PG_TMP=
}
