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
# Needs valgrind, nginx and ab (apache2-utils). The counting itself is scripts/instr-cost.sh's.
set -euo pipefail
case "${1:-}" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    "") ;;
    *) echo "metrics-cost.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac
REPO=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${TOLLGATE_BIN:-}" ]]; then
    (cd "$REPO" && cargo build --release --quiet)
    TOLLGATE_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/tollgate
fi
for run in $(seq "${RUNS:-2}"); do
    for metrics in true false; do
        RUNS=1 FLOOR=0 EXTRA_ENV="TOLLGATE_METRICS=$metrics" \
            "$REPO/scripts/instr-cost.sh" "metrics_$metrics=$TOLLGATE_BIN" |
            sed "s/^run 1 metrics_$metrics:/run $run metrics=$metrics:/"
    done
done
