#!/usr/bin/env bash
# metrics-cost.sh - instructions per proxied request with metrics on and off, by callgrind.
#
# Usage: scripts/metrics-cost.sh [--help]
#
# The load benchmark (COMPARE_METRICS=1 scripts/bench.sh) cannot resolve a few per cent on a
# 2-core machine; instruction counts can, and repeat. For TOLLGATE_METRICS=true and =false,
# runs the release gateway under `valgrind --tool=callgrind` (one worker, rate limiting on, one
# anonymous client whose limit is never reached, health checks and flushes hourly) in front of
# an nginx backend it starts on 127.0.0.1:9101, sends N1 then N2 keep-alive requests
# (`ab -k -c 4`) in two separate runs, and prints (instructions(N2) - instructions(N1)) /
# (N2 - N1): the cost of one request, start-up and shutdown cancelled out.
#
# Environment: N1 [1000], N2 [6000], RUNS [2], TOLLGATE_BIN [target/release/tollgate, built].
# Needs valgrind, nginx and ab (apache2-utils).
set -euo pipefail
case "${1:-}" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    "") ;;
    *) echo "metrics-cost.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac
REPO=$(cd "$(dirname "$0")/.." && pwd)
N1=${N1:-1000} N2=${N2:-6000} RUNS=${RUNS:-2}
for tool in valgrind nginx ab curl; do
    command -v "$tool" >/dev/null || { echo "metrics-cost.sh: needs $tool" >&2; exit 1; }
done
if [[ -z "${TOLLGATE_BIN:-}" ]]; then
    (cd "$REPO" && cargo build --release --quiet)
    TOLLGATE_BIN=$REPO/target/release/tollgate
fi
WORK=$(mktemp -d)
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:9101; location / { return 200 "ok\n"; } } }
CONF
nginx -c "$WORK/nginx.conf"
trap 'nginx -s stop -c "$WORK/nginx.conf" 2>/dev/null || true; rm -rf "$WORK"' EXIT

# instructions METRICS N: the gateway's total instruction count for a run of N requests.
instructions() {
    local dir
    dir=$(mktemp -d -p "$WORK")
    (cd "$dir" && exec env -i PATH="$PATH" TOLLGATE_METRICS="$1" RUST_LOG=warn DATABASE_URL="sqlite://$dir/t.db" \
        TOLLGATE_WORKERS=1 TOLLGATE_BACKENDS=http://127.0.0.1:9101 TOLLGATE_LISTEN=127.0.0.1:9180 \
        TOLLGATE_DEFAULT_CAPACITY=1000000 TOLLGATE_DEFAULT_RATE=1000000 \
        TOLLGATE_ADMIN_LISTEN=127.0.0.1:9181 TOLLGATE_HEALTH_INTERVAL=1h TOLLGATE_FLUSH_INTERVAL=1h \
        valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$TOLLGATE_BIN" >"$dir/log" 2>&1) &
    local pid=$!
    for _ in $(seq 300); do curl -sf -o /dev/null http://127.0.0.1:9181/readyz && break; sleep 0.2; done
    fail() { echo "metrics-cost.sh: $*" >&2; kill -TERM "$pid" 2>/dev/null; wait "$pid" || true; exit 1; }
    curl -sf -o /dev/null http://127.0.0.1:9181/readyz || fail "the gateway did not start: $(cat "$dir/log")"
    ab -q -k -n "$2" -c 4 http://127.0.0.1:9180/ >"$dir/ab.txt" 2>&1
    ! grep -q "^Non-2xx responses" "$dir/ab.txt" || fail "non-2xx answers: $(cat "$dir/ab.txt")"
    kill -TERM "$pid"
    wait "$pid" || true
    awk '/^(summary|totals):/ { print $2; exit }' "$dir/cg.out"
}

for run in $(seq "$RUNS"); do
    for metrics in true false; do
        a=$(instructions "$metrics" "$N1") || exit 1
        b=$(instructions "$metrics" "$N2") || exit 1
        echo "run $run metrics=$metrics: $(( (b - a) / (N2 - N1) )) instructions per request"
    done
done
