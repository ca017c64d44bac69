#!/usr/bin/env bash
# bench.sh - tollgate next to nginx and HAProxy, with the shared proxy-bench harness.
#
# Usage: scripts/bench.sh [--help]
#
# Builds target/release/tollgate and the reference forwarder target/release/examples/floor
# (examples/floor: the minimal actix-web + awc proxy on our own Cargo.lock, the stack's floor),
# starts tollgate on 127.0.0.1:8280 (admin :8281) with one worker, RUST_LOG=warn (no access
# log) and the harness's two nginx backends, the floor on :8284 with one worker and the same
# backends, then runs
#     proxy-bench.sh tollgate=8280:PID floor=8284:PID
# The harness's markdown table goes to stdout, followed by one summary line per target.
# Progress, build output and the gateway's warnings go to stderr.
#
# Environment (defaults in brackets):
#   ROUNDS [5]           harness rounds (the harness's own default is 3)
#   DURATION WARMUP CONNS THREADS PIN OUT_DIR KEEP BASELINE ...
#                        passed through to the harness: scripts/proxy-bench.sh --help
#   TOLLGATE_EXTRA_ENV   space-separated VAR=VALUE pairs added to (or overriding) the gateway's
#                        env, e.g. TOLLGATE_EXTRA_ENV="TOLLGATE_RETRIES=0 TOLLGATE_WORKERS=2"
#   TOLLGATE_BIN         binary to bench instead of building target/release/tollgate
#   FLOOR [1]            0 = no floor target
#   FLOOR_BIN            floor binary to run instead of building the example
#   PROXY_BENCH          harness [scripts/proxy-bench.sh, else ../shared/bench/proxy-bench.sh]
#   COMPARE_BIN          another tollgate binary run as one more target in the same rounds, e.g.
#                        the proxy-actor build: `cargo build --release --features proxy-actor`,
#                        copied aside; COMPARE_NAME [variant] names it, on :8282
#   COMPARE_RATE_LIMIT   1 = rate limiting on versus off in the same run: `tollgate` (on, as
#                        always here, for one client whose limit is never reached) and `tollgate_off`
#                        (TOLLGATE_RATE_LIMIT=false, :8282); defaults ANCHORS=nginx and
#                        BASELINE=tollgate_off, so the ratio column is on / off.
#   COMPARE_METRICS      1 = metrics recorded versus not in the same run: `tollgate` (metrics on,
#                        as always here) and `tollgate_nometrics` (TOLLGATE_METRICS=false,
#                        :8282); defaults ANCHORS=nginx and BASELINE=tollgate_nometrics, so the
#                        ratio column is on / off.
#   CLUSTER_PAIRS        1 = cluster-wide limits versus per-instance buckets, on PostgreSQL
#                        (PG_URL [postgres://postgres@127.0.0.1:5432], a scratch database is
#                        created and dropped): two gateways with TOLLGATE_LIMIT_SCOPE=cluster
#                        behind one HAProxy (`cluster`, :8290) and two with =local behind
#                        another (`local`, :8291), all four on the one database, for one client
#                        registered by address (127.0.0.1/32, a limit never reached) so that
#                        every request is charged to the same row; defaults ANCHORS=nginx and
#                        BASELINE=local, so the ratio column is cluster / local.
#                        PAIRS_ORDER=local-first runs the local pair first in each round.
#
# The gateway runs from a temporary directory, without the caller's TOLLGATE_*, RUST_LOG and
# DATABASE_URL, so neither the repo's .env nor a stray export changes what is measured: use
# TOLLGATE_EXTRA_ENV for variants (the floor takes none of them). With PIN=split|isolate|custom
# the gateways and the floor are pinned to the harness's PROXY_CPUS, like the nginx and HAProxy
# anchors. The floor is started in every mode, last, so it is the last target of each round.
#
# Example (short smoke run): ROUNDS=1 DURATION=3s WARMUP=1s scripts/bench.sh

set -euo pipefail

case "${1:-}" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    "") ;;
    *) echo "bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
export ROUNDS=${ROUNDS:-5}
PORT=8280 ADMIN_PORT=8281 FLOOR_PORT=8284
B1_PORT=${B1_PORT:-9001} B2_PORT=${B2_PORT:-9002}   # the harness starts these backends

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# An explicit PROXY_BENCH wins; otherwise the in-repo copy, then the shared original.
HARNESS=${PROXY_BENCH:-$REPO/scripts/proxy-bench.sh}
[[ -n "${PROXY_BENCH:-}" || -x "$HARNESS" ]] || HARNESS=$REPO/../shared/bench/proxy-bench.sh
[[ -x "$HARNESS" ]] || die "harness not found or not executable: $HARNESS"

if [[ -n "${TOLLGATE_BIN:-}" ]]; then
    [[ -x "$TOLLGATE_BIN" ]] || die "TOLLGATE_BIN=$TOLLGATE_BIN is not an executable"
    BIN=$(realpath "$TOLLGATE_BIN")   # absolute: the gateway runs from another directory
else
    log "cargo build --release"
    (cd "$REPO" && cargo build --release) >&2   # keep stdout for the table
    BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/tollgate
fi
FLOOR=${FLOOR:-1}
if [[ "$FLOOR" != 0 && -n "${FLOOR_BIN:-}" ]]; then
    [[ -x "$FLOOR_BIN" ]] || die "FLOOR_BIN=$FLOOR_BIN is not an executable"
    FLOOR_BIN=$(realpath "$FLOOR_BIN")
elif [[ "$FLOOR" != 0 ]]; then
    # A build of its own: built together, the gateway would get the dev-dependencies' features
    # that an example is built with.
    log "cargo build --release --example floor"
    (cd "$REPO" && cargo build --release --example floor) >&2
    FLOOR_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/examples/floor
fi

gw_env=(
    "TOLLGATE_BACKENDS=http://127.0.0.1:$B1_PORT,http://127.0.0.1:$B2_PORT"
    TOLLGATE_WORKERS=1
    RUST_LOG=warn                 # the access log is info-level: off
    TOLLGATE_HEALTH_INTERVAL=1s   # backends come up after the gateway: recover quickly
    # Rate limiting on, as in production, for one client (the load generator's address) whose
    # limit is never reached: the cost of the check is measured, never a refusal.
    TOLLGATE_DEFAULT_CAPACITY=1000000
    TOLLGATE_DEFAULT_RATE=1000000
)
read -r -a extra_env <<<"${TOLLGATE_EXTRA_ENV:-}"
for kv in "${extra_env[@]}"; do
    [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "TOLLGATE_EXTRA_ENV: '$kv' is not VAR=VALUE"
done

# Same CPU layout as the harness gives its anchor proxies (its presets, see its --help).
pin=()
case "${PIN:-none}" in
    split|isolate) pin=(taskset -c "${PROXY_CPUS:-1}") ;;
    custom) if [[ -n "${PROXY_CPUS:-}" ]]; then pin=(taskset -c "$PROXY_CPUS"); fi ;;
esac

for p in "$PORT" "$ADMIN_PORT" 8282 8283 "$FLOOR_PORT" 8290 8291 8300 8301 8302 8303 8310 8311 8312 8313; do
    if port_open "$p"; then die "port $p is already in use (a gateway left running?)"; fi
done

WORK=$(mktemp -d -t tollgate-bench.XXXXXX)
GW_PIDS=()
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${GW_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true   # the drain took over 5 s
        wait "$pid" 2>/dev/null || true
    done
    if [[ -s "$WORK/gateway.log" ]]; then
        log "gateway log (last 20 lines of $(wc -l <"$WORK/gateway.log")):"
        tail -n 20 "$WORK/gateway.log" >&2
    fi
    if [[ -s "$WORK/floor.log" ]]; then
        log "floor log (last 20 lines):"
        tail -n 20 "$WORK/floor.log" >&2
    fi
    if declare -F drop_db >/dev/null; then drop_db; fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stale=$(compgen -e | grep -E '^(TOLLGATE_|RUST_LOG$|DATABASE_URL$)' || true)
targets=()
# start_gateway NAME PORT ADMIN_PORT [VAR=VALUE ...]: one gateway in its own directory.
start_gateway() {
    local name=$1 port=$2 admin=$3 dir="$WORK/$1"
    shift 3
    mkdir -p "$dir"
    (
        cd "$dir"   # tollgate reads .env from its working directory; there is none here
        # shellcheck disable=SC2086  # one variable name per word
        unset $stale
        exec "${pin[@]}" env "${gw_env[@]}" "TOLLGATE_LISTEN=127.0.0.1:$port" \
            "TOLLGATE_ADMIN_LISTEN=127.0.0.1:$admin" "$@" "${extra_env[@]}" "${GW_BIN:-$BIN}"
    ) >>"$WORK/gateway.log" 2>&1 &
    local pid=$!
    GW_PIDS+=("$pid")
    for _ in $(seq 100); do
        port_open "$port" && break
        kill -0 "$pid" 2>/dev/null || die "gateway $name exited before listening on :$port"
        sleep 0.1
    done
    port_open "$port" || die "gateway $name did not listen on :$port within 10 s"
    log "$name pid $pid on :$port${TOLLGATE_EXTRA_ENV:+ with $TOLLGATE_EXTRA_ENV}"
    [[ -n "${GW_QUIET:-}" ]] || targets+=("$name=$port:$pid")
}

# start_floor: the reference forwarder (examples/floor), one worker, the same backends, pinned
# like the gateways (its backends on the command line: it reads no other setting).
start_floor() {
    (
        cd "$WORK"
        exec "${pin[@]}" "$FLOOR_BIN" "127.0.0.1:$FLOOR_PORT" \
            "http://127.0.0.1:$B1_PORT" "http://127.0.0.1:$B2_PORT" --workers 1
    ) >>"$WORK/floor.log" 2>&1 &
    local pid=$!
    GW_PIDS+=("$pid")
    for _ in $(seq 100); do
        port_open "$FLOOR_PORT" && break
        kill -0 "$pid" 2>/dev/null || die "the floor exited before listening on :$FLOOR_PORT"
        sleep 0.1
    done
    port_open "$FLOOR_PORT" || die "the floor did not listen on :$FLOOR_PORT within 10 s"
    log "floor pid $pid on :$FLOOR_PORT"
    targets+=("floor=$FLOOR_PORT:$pid")
}

# start_pair NAME LB_PORT FIRST_PORT SCOPE: two gateways on the bench database (proxy ports
# FIRST_PORT and FIRST_PORT+2, admin +1 and +3) behind one HAProxy on LB_PORT.
start_pair() {
    local name=$1 lb=$2 first=$3 scope=$4 i port servers=""
    for i in 0 1; do
        port=$((first + 2 * i))
        GW_QUIET=1 start_gateway "${name}_$i" "$port" "$((port + 1))" \
            "DATABASE_URL=$BENCH_DB_URL" "TOLLGATE_LIMIT_SCOPE=$scope"
        servers+="    server ${name}_$i 127.0.0.1:$port"$'\n'
    done
    cat >"$WORK/$name-haproxy.cfg" <<CFG
global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend f
    bind 127.0.0.1:$lb
    default_backend b
backend b
    balance roundrobin
$servers
CFG
    "${pin[@]}" haproxy -f "$WORK/$name-haproxy.cfg" -db >>"$WORK/haproxy.log" 2>&1 &
    GW_PIDS+=("$!")
    for _ in $(seq 50); do port_open "$lb" && break; sleep 0.1; done
    port_open "$lb" || die "HAProxy of $name did not listen on :$lb"
    # The gateways and their HAProxy count as one target: CPU of the whole pair.
    targets+=("$name=$lb")
}

if [[ "${CLUSTER_PAIRS:-0}" == 1 ]]; then
    command -v haproxy >/dev/null || die "CLUSTER_PAIRS=1 needs haproxy (apt-get install haproxy)"
    command -v psql >/dev/null || die "CLUSTER_PAIRS=1 needs psql"
    export ANCHORS=${ANCHORS:-nginx} BASELINE=${BASELINE:-local}
    PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
    BENCH_DB=tollgate_bench_$$
    psql "$PG_URL/postgres" -qc "CREATE DATABASE $BENCH_DB" >&2 || die "cannot create $BENCH_DB on $PG_URL"
    BENCH_DB_URL=$PG_URL/$BENCH_DB
    drop_db() { psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >&2 || true; }
    # The harness runs targets in the order given: PAIRS_ORDER=local-first swaps them, to see
    # that the ratio does not come from the order.
    if [[ "${PAIRS_ORDER:-cluster-first}" == local-first ]]; then
        start_pair local 8291 8310 local
        start_pair cluster 8290 8300 cluster
    else
        start_pair cluster 8290 8300 cluster
        start_pair local 8291 8310 local
    fi
    # One client for every request (by address): never limited, always charged.
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:8301/clients" -H 'content-type: application/json' \
        -d '{"client_id":"bench","capacity":1000000,"rate_per_sec":1000000,"ips":["127.0.0.1/32"]}' \
        || die "cannot register the bench client"
    for admin in 8303 8311 8313; do
        for _ in $(seq 50); do
            curl -fsS -o /dev/null "http://127.0.0.1:$admin/clients/bench" && break
            sleep 0.1
        done
    done
elif [[ "${COMPARE_RATE_LIMIT:-0}" == 1 ]]; then
    export ANCHORS=${ANCHORS:-nginx} BASELINE=${BASELINE:-tollgate_off}
    start_gateway tollgate "$PORT" "$ADMIN_PORT"
    start_gateway tollgate_off 8282 8283 TOLLGATE_RATE_LIMIT=false
elif [[ "${COMPARE_METRICS:-0}" == 1 ]]; then
    export ANCHORS=${ANCHORS:-nginx} BASELINE=${BASELINE:-tollgate_nometrics}
    start_gateway tollgate "$PORT" "$ADMIN_PORT"
    start_gateway tollgate_nometrics 8282 8283 TOLLGATE_METRICS=false
elif [[ -n "${COMPARE_BIN:-}" ]]; then
    [[ -x "$COMPARE_BIN" ]] || die "COMPARE_BIN=$COMPARE_BIN is not an executable"
    start_gateway tollgate "$PORT" "$ADMIN_PORT"
    GW_BIN=$(realpath "$COMPARE_BIN") start_gateway "${COMPARE_NAME:-variant}" 8282 8283
else
    start_gateway tollgate "$PORT" "$ADMIN_PORT"
fi
if [[ "$FLOOR" != 0 ]]; then start_floor; fi
log "harness $HARNESS"

"$HARNESS" "${targets[@]}" | tee "$WORK/table.md"

# One line per target, from the table's columns:
# | target | req/s | ratio | ratio min-max | p50 | p99 | CPU us/req | box busy | errors |
echo
awk -F' *[|] *' -v base="${BASELINE:-nginx}" 'NR > 2 && NF >= 11 {
    printf "%-11s %7s req/s  %5s x %s (%s)  p50 %s ms  p99 %s ms  %s us CPU/req  %s errors\n",
        $2, $3, $4, base, $5, $6, $7, $8, $10 }' "$WORK/table.md"
