#!/usr/bin/env bash
# scale-bench.sh - the client table at scale: 1,000,000 registered clients in the database.
#
# Usage: scripts/scale-bench.sh [sqlite|postgres|both]   (default: both)
#
# For each database: starts the release gateway (with --demo backends) on an empty database
# and measures its RSS, stops it, bulk-loads N clients with plain SQL (not through the API),
# starts it again and prints
#   - start-up time from exec to /readyz 200, with N clients;
#   - RSS with N clients minus RSS with none, per client;
#   - p50/p99 of admin POST, PATCH and DELETE (REQS each, one at a time, over HTTP);
#   - that a key of the loaded clients is admitted (proxy answers 200).
# Targets (issue 7): start <= 15 s, <= 300 B/client, admin p99 <= 5 ms.
#
# Environment (defaults in brackets):
#   N [1000000]        clients loaded
#   REQS [300]         admin requests of each kind
#   TOLLGATE_BIN       binary [target/release/tollgate, built if missing]
#   PG_URL             server [postgres://postgres@127.0.0.1:5432]; database tollgate_scale is
#                      dropped and created
# Needs python3 (with its sqlite3 module) and psql.

set -euo pipefail

case "${1:-both}" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    sqlite|postgres|both) WHICH=${1:-both} ;;
    *) echo "scale-bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-1000000}
REQS=${REQS:-300}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
BIN=${TOLLGATE_BIN:-$REPO/target/release/tollgate}
if [[ ! -x $BIN ]]; then
    (cd "$REPO" && cargo build --release --bin tollgate >&2)
fi
WORK=$(mktemp -d)
GW_PID=
cleanup() {
    [[ -n $GW_PID ]] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

PROXY_PORT=18380
ADMIN_PORT=18381

# start_gateway URL: starts the gateway, waits for /readyz 200, sets READY_SECS.
start_gateway() {
    local url=$1 t0
    t0=$(date +%s.%N)
    (cd "$WORK" && exec env -i PATH="$PATH" HOME="$HOME" "$BIN" --demo --log warn \
        --listen 127.0.0.1:$PROXY_PORT --admin-listen 127.0.0.1:$ADMIN_PORT \
        --database-url "$url") >"$WORK/gateway.log" 2>&1 &
    GW_PID=$!
    READY_SECS=$(python3 - "$ADMIN_PORT" "$t0" <<'PY'
import sys, time, urllib.request
port, t0 = int(sys.argv[1]), float(sys.argv[2])
deadline = time.time() + 120
while time.time() < deadline:
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
            print(f"{time.time() - t0:.2f}")
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.02)
sys.exit("gateway not ready within 120 s")
PY
)
}

# The gateway's process (the subshell execs it).
gateway_pid() { echo "$GW_PID"; }

rss_bytes() {
    local pid
    pid=$(gateway_pid)
    awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$pid/status"
}

stop_gateway() {
    kill "$(gateway_pid)" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
    GW_PID=
}

load_sqlite() {
    python3 - "$1" "$N" <<'PY'
import hashlib, sqlite3, sys, time
path, n = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(path)
now = int(time.time() * 1000)
def rows():
    for i in range(n):
        key = f"scale-key-{i}"
        yield (f"client-{i}", hashlib.sha256(key.encode()).hexdigest(), key[:8], 100, 10000, now, now)
db.executemany(
    "INSERT INTO clients (client_id, api_key_hash, key_prefix, capacity, rate_milli, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)", rows())
db.commit()
PY
}

load_postgres() {
    psql -q "$1" -c "INSERT INTO clients (client_id, api_key_hash, key_prefix, capacity, rate_milli, created_at, updated_at)
        SELECT 'client-' || i, encode(sha256(convert_to('scale-key-' || i, 'UTF8')), 'hex'), 'scale-ke', 100, 10000,
               (extract(epoch from now()) * 1000)::bigint, (extract(epoch from now()) * 1000)::bigint
        FROM generate_series(0, $N - 1) AS i"
    # The maintenance a million new rows start (autovacuum, analyze) done now, not during
    # the admin writes measured next.
    psql -q "$1" -c "VACUUM ANALYZE clients"
}

admin_latencies() {
    python3 - "$ADMIN_PORT" "$PROXY_PORT" "$REQS" "$N" <<'PY'
import http.client, json, sys, time
admin, proxy, reqs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", admin)
def call(method, path, body=None):
    t = time.perf_counter()
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"content-type": "application/json"})
    r = c.getresponse(); r.read()
    return time.perf_counter() - t, r.status
def stats(name, samples, want):
    times = sorted(t for t, s in samples)
    bad = [s for _, s in samples if s != want]
    p = lambda q: times[min(len(times) - 1, int(len(times) * q))] * 1000
    print(f"  admin {name:6} p50 {p(0.5):.2f} ms  p99 {p(0.99):.2f} ms  ({len(samples)} requests, {len(bad)} not {want})")
ids = [f"bench-{i}" for i in range(reqs)]
stats("POST", [call("POST", "/clients", {"client_id": i, "capacity": 10, "rate_per_sec": 1}) for i in ids], 201)
stats("PATCH", [call("PATCH", f"/clients/{i}", {"capacity": 20}) for i in ids], 200)
stats("DELETE", [call("DELETE", f"/clients/{i}") for i in ids], 204)
p = http.client.HTTPConnection("127.0.0.1", proxy)
p.request("GET", "/", headers={"x-api-key": f"scale-key-{int(sys.argv[4]) // 2}"}); r = p.getresponse(); r.read()
print(f"  a loaded client's key through the proxy: {r.status}")
PY
}

run() {
    local name=$1 url=$2 load=$3 t_empty rss0 t_full rss1
    echo "== $name, $N clients =="
    start_gateway "$url"
    t_empty=$READY_SECS
    sleep 2
    rss0=$(rss_bytes)
    stop_gateway
    local t_load0 t_load1
    t_load0=$(date +%s.%N)
    $load "$4"
    t_load1=$(date +%s.%N)
    # The load's dirty pages go to disk now, not during the admin writes measured below.
    sync
    echo "  bulk load: $(python3 -c "print(f'{$t_load1 - $t_load0:.1f}')") s"
    start_gateway "$url"
    t_full=$READY_SECS
    sleep 2
    rss1=$(rss_bytes)
    echo "  start-up to /readyz 200: empty ${t_empty} s, with $N clients ${t_full} s"
    echo "  RSS: empty $((rss0 / 1048576)) MiB, with $N clients $((rss1 / 1048576)) MiB," \
        "$(((rss1 - rss0) / N)) bytes per client"
    admin_latencies
    stop_gateway
}

if [[ $WHICH == sqlite || $WHICH == both ]]; then
    db="$WORK/scale.db"
    run SQLite "sqlite://$db" load_sqlite "$db"
fi
if [[ $WHICH == postgres || $WHICH == both ]]; then
    psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS tollgate_scale WITH (FORCE)" -c "CREATE DATABASE tollgate_scale"
    run PostgreSQL "$PG_URL/tollgate_scale" load_postgres "$PG_URL/tollgate_scale"
    psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS tollgate_scale WITH (FORCE)"
fi
