#!/usr/bin/env bash
# lease-load.sh - database statements per second per instance under cluster-wide limits.
#
# Usage: scripts/lease-load.sh [--help]
#
# Builds target/release/tollgate, starts three gateways (TOLLGATE_LIMIT_SCOPE=cluster) on a
# scratch PostgreSQL database (PG_URL [postgres://postgres@127.0.0.1:5432], created and
# dropped) in front of one nginx backend, and drives them with wrk (one wrk per instance, the
# same load on each) in two cases:
#   over   one client over its limit (C=10, R=10): every request but 10 a second is refused
#   under  1,000 clients under theirs (C=1,000,000, R=1,000,000), keys taken in turn
# each at about 1,000 requests per second in all (wrk's per-request delay) and as fast as the
# machine goes (the "max" line: on 2 cores about 15,000-20,000 per second).
# Each run is done twice, the first unmeasured (every client's first request on an instance
# waits for a lease). For each run it prints the requests per second achieved and, per instance, the lease
# statements per second (tick and on demand, from GET /cluster), next to the ceiling of one
# tick statement per TOLLGATE_LEASE_TICK (100 ms: 10 per second).
#
# Environment: DURATION [5s] (per run), PG_URL, TOLLGATE_BIN (skip the build).
set -euo pipefail

case "${1:-}" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    "") ;;
    *) echo "lease-load.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-5s}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
log() { printf '[lease-load] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for tool in wrk nginx psql curl python3; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

if [[ -n "${TOLLGATE_BIN:-}" ]]; then
    BIN=$(realpath "$TOLLGATE_BIN")
else
    (cd "$REPO" && cargo build --release) >&2
    BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/tollgate
fi

BACKEND=9301
PORTS=(8500 8502 8504)
for p in "$BACKEND" "${PORTS[@]}" 8501 8503 8505; do
    if port_open "$p"; then die "port $p is in use"; fi
done
WORK=$(mktemp -d -t tollgate-lease.XXXXXX)
DB=tollgate_lease_$$
PIDS=()
cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -f "$WORK/nginx.pid" ]]; then kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; fi
    psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT

cat >"$WORK/nginx.conf" <<CFG
worker_processes 1; pid $WORK/nginx.pid; error_log $WORK/nginx.err; daemon on;
events {} http { access_log off; server { listen 127.0.0.1:$BACKEND; location / { return 200 "ok\n"; } } }
CFG
nginx -c "$WORK/nginx.conf"
psql "$PG_URL/postgres" -qc "CREATE DATABASE $DB" >&2

for i in 0 1 2; do
    port=${PORTS[$i]}
    env -i PATH="$PATH" DATABASE_URL="$PG_URL/$DB" TOLLGATE_BACKENDS="http://127.0.0.1:$BACKEND" \
        TOLLGATE_WORKERS=1 TOLLGATE_LISTEN="127.0.0.1:$port" TOLLGATE_ADMIN_LISTEN="127.0.0.1:$((port + 1))" \
        RUST_LOG=warn "$BIN" >>"$WORK/gateway.log" 2>&1 &
    PIDS+=("$!")
done
for i in 0 1 2; do
    for _ in $(seq 100); do port_open "${PORTS[$i]}" && break; sleep 0.1; done
    port_open "${PORTS[$i]}" || die "gateway $i did not start: $(tail -5 "$WORK/gateway.log")"
done

admin=http://127.0.0.1:8501
curl -fsS -o /dev/null -X POST "$admin/clients" -H 'content-type: application/json' \
    -d '{"client_id":"over","capacity":10,"rate_per_sec":10,"api_key":"lease-load-over-key-0000"}'
python3 - "$admin" <<'PY'
import json, sys, urllib.request
items = [{"client_id": f"under-{i:04d}", "capacity": 1000000, "rate_per_sec": 1000000,
          "api_key": f"lease-load-under-key-{i:04d}"} for i in range(1000)]
req = urllib.request.Request(sys.argv[1] + "/clients/batch", data=json.dumps(items).encode(),
                             headers={"content-type": "application/json"}, method="POST")
urllib.request.urlopen(req).read()
PY
# Every instance knows every client before the runs.
for i in 0 1 2; do
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$((PORTS[i] + 1))/clients/under-0999" && break
        sleep 0.1
    done
done

# lua KEYS DELAY_MS: requests with the keys in turn, DELAY_MS between a connection's requests.
lua() {
    cat >"$WORK/load.lua" <<LUA
local keys, n, i = {}, $1, 0
for k = 0, n - 1 do keys[k + 1] = string.format("$2", k) end
request = function()
  i = i + 1
  return wrk.format("GET", "/", { ["x-api-key"] = keys[(i % n) + 1] })
end
$( [[ "$3" != 0 ]] && echo "delay = function() return $3 end" )
LUA
}

statements() {
    local i total=""
    for i in 0 1 2; do
        total+=$(curl -fsS "http://127.0.0.1:$((PORTS[i] + 1))/cluster" | python3 -c \
            'import json,sys; s=json.load(sys.stdin)["limits"]["lease_statements"]; print(s["tick"], s["on_demand"])')" "
    done
    echo "$total"
}

secs=${DURATION%s}
run() {
    local case=$1 rate=$2 keys fmt delay conns
    if [[ $case == over ]]; then keys=1 fmt="lease-load-over-key-%04d"; else keys=1000 fmt="lease-load-under-key-%04d"; fi
    # ~1,000 per second in all: 3 instances x 4 connections x one request per 12 ms.
    if [[ $rate == 1000 ]]; then delay=12 conns=4; else delay=0 conns=32; fi
    lua "$keys" "$fmt" "$delay"
    read -r -a before <<<"$(statements)"
    local i wrks=()
    for i in 0 1 2; do
        wrk -t1 -c"$conns" -d"$DURATION" -s "$WORK/load.lua" "http://127.0.0.1:${PORTS[$i]}/" >"$WORK/wrk$i.out" &
        wrks+=("$!")
    done
    wait "${wrks[@]}"
    read -r -a after <<<"$(statements)"
    local rps
    rps=$(awk '/^Requests\/sec/ { s += $2 } END { printf "%.0f", s }' "$WORK"/wrk{0,1,2}.out)
    printf '%-5s %-5s %7s req/s in all |' "$case" "$rate" "$rps"
    for i in 0 1 2; do
        awk -v t="$(( after[2*i] - before[2*i] ))" -v d="$(( after[2*i+1] - before[2*i+1] ))" -v s="$secs" -v i="$i" \
            'BEGIN { printf " instance %d: %.1f tick + %.1f on demand /s |", i, t / s, d / s }'
    done
    echo
}

echo "case  rate   achieved              | lease statements per second per instance (ceiling: 10 tick/s)"
for case in over under; do
    for rate in 1000 max; do
        # Unmeasured first: each client's first request on an instance waits for a lease
        # (1,000 clients x 3 instances of them); what follows is the steady state.
        run "$case" "$rate" >/dev/null
        run "$case" "$rate"
    done
done
