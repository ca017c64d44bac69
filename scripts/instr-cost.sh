#!/usr/bin/env bash
# instr-cost.sh - instructions per proxied request, by callgrind: tollgate builds side by side
# with the reference forwarder (examples/floor), to say what each per-request lever gave.
#
# Usage: scripts/instr-cost.sh [NAME=BINARY ...] [--help]
#
# The load benchmark (scripts/bench.sh) cannot resolve a few per cent on a 2-core machine;
# instruction counts can, and repeat. Each NAME=BINARY is a tollgate binary (e.g. one built at
# an earlier commit: `git worktree add /tmp/old <rev> && cargo build --release` there); with
# no argument, the current target/release/tollgate (built) as `tollgate`. The floor
# (target/release/examples/floor, built) runs as `floor` unless FLOOR=0. Each runs under
# `valgrind --tool=callgrind` with one worker in front of an nginx backend started on
# 127.0.0.1:9101; tollgate with rate limiting on for one anonymous client whose limit is never
# reached, health checks and flushes hourly, as in scripts/bench.sh. N1 then N2 keep-alive
# requests (`ab -k -c 4`) in two separate runs give (instructions(N2) - instructions(N1)) /
# (N2 - N1): the cost of one request, start-up and shutdown cancelled out.
#
# Work done on a timer (tollgate's heartbeat, write-behind, lease and sampler ticks) counts
# too, and under valgrind a run lasts about 50 times longer than it would, so that work weighs
# about 50 times more per request than it does at full speed. WORKER_ONLY=1 counts only the
# busiest thread of each run (callgrind --separate-threads): the worker serving the requests.
#
# Environment: N1 [1000], N2 [6000], RUNS [2], FLOOR [1], WORKER_ONLY [0], EXTRA_ENV (VAR=VALUE
# pairs for the tollgate runs). Needs valgrind, nginx, ab (apache2-utils) and curl.
set -euo pipefail
case "${1:-}" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
REPO=$(cd "$(dirname "$0")/.." && pwd)
N1=${N1:-1000} N2=${N2:-6000} RUNS=${RUNS:-2} FLOOR=${FLOOR:-1} WORKER_ONLY=${WORKER_ONLY:-0}
threads=()
[[ "$WORKER_ONLY" == 1 ]] && threads=(--separate-threads=yes)
for tool in valgrind nginx ab curl; do
    command -v "$tool" >/dev/null || { echo "instr-cost.sh: needs $tool" >&2; exit 1; }
done
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    (cd "$REPO" && cargo build --release --quiet)
    targets=("tollgate=${CARGO_TARGET_DIR:-$REPO/target}/release/tollgate")
fi
if [[ "$FLOOR" != 0 ]]; then
    (cd "$REPO" && cargo build --release --quiet --example floor)
    targets+=("floor=${CARGO_TARGET_DIR:-$REPO/target}/release/examples/floor")
fi
for t in "${targets[@]}"; do
    [[ "$t" == *=* && -x "${t#*=}" ]] || { echo "instr-cost.sh: not NAME=BINARY with an executable: $t" >&2; exit 2; }
done
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

# instructions NAME BINARY N: the target's total instruction count for a run of N requests.
instructions() {
    local dir pid ready
    dir=$(mktemp -d -p "$WORK")
    if [[ "$1" == floor ]]; then
        (cd "$dir" && exec env -i PATH="$PATH" \
            valgrind --tool=callgrind "${threads[@]}" --callgrind-out-file="$dir/cg.out" \
            "$2" 127.0.0.1:9180 http://127.0.0.1:9101 --workers 1 >"$dir/log" 2>&1) &
        ready=http://127.0.0.1:9180/
    else
        # shellcheck disable=SC2086 # EXTRA_ENV is a list of VAR=VALUE words
        (cd "$dir" && exec env -i PATH="$PATH" RUST_LOG=warn DATABASE_URL="sqlite://$dir/t.db" \
            TOLLGATE_WORKERS=1 TOLLGATE_BACKENDS=http://127.0.0.1:9101 TOLLGATE_LISTEN=127.0.0.1:9180 \
            TOLLGATE_DEFAULT_CAPACITY=1000000 TOLLGATE_DEFAULT_RATE=1000000 \
            TOLLGATE_ADMIN_LISTEN=127.0.0.1:9181 TOLLGATE_HEALTH_INTERVAL=1h TOLLGATE_FLUSH_INTERVAL=1h \
            ${EXTRA_ENV:-} \
            valgrind --tool=callgrind "${threads[@]}" --callgrind-out-file="$dir/cg.out" "$2" >"$dir/log" 2>&1) &
        ready=http://127.0.0.1:9181/readyz
    fi
    pid=$!
    for _ in $(seq 300); do curl -sf -o /dev/null "$ready" && break; sleep 0.2; done
    fail() { echo "instr-cost.sh: $*" >&2; kill -TERM "$pid" 2>/dev/null; wait "$pid" || true; exit 1; }
    curl -sf -o /dev/null "$ready" || fail "$1 did not start: $(cat "$dir/log")"
    ab -q -k -n "$3" -c 4 http://127.0.0.1:9180/ >"$dir/ab.txt" 2>&1
    ! grep -q "^Non-2xx responses" "$dir/ab.txt" || fail "$1: non-2xx answers: $(cat "$dir/ab.txt")"
    kill -TERM "$pid"
    wait "$pid" || true
    # One file per thread with WORKER_ONLY=1 (cg.out-01, ...): the busiest one's count.
    for f in "$dir"/cg.out*; do
        awk '/^(summary|totals):/ { print $2; exit }' "$f"
    done | sort -n | tail -n 1
}

for run in $(seq "$RUNS"); do
    for t in "${targets[@]}"; do
        a=$(instructions "${t%%=*}" "${t#*=}" "$N1") || exit 1
        b=$(instructions "${t%%=*}" "${t#*=}" "$N2") || exit 1
        echo "run $run ${t%%=*}: $(( (b - a) / (N2 - N1) )) instructions per request"
    done
done
