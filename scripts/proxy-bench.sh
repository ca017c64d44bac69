#!/usr/bin/env bash
# Verbatim copy of /work/shared/bench/proxy-bench.sh (see /work/shared/bench/README.md), kept here
# so the repo is self-contained; refresh it by copying again and re-adding these two lines.
# proxy-bench.sh - HTTP proxy throughput/latency against fixed anchors, in alternating rounds.
#
# Starts two nginx backends (one worker each, `return 200 "ok\n"`), an nginx reverse proxy
# (one worker) and an HAProxy (one thread), then runs wrk against every target in turn,
# ROUNDS times (A B C ... A B C ...), and prints medians and per-round ratios to a baseline.
# Everything it starts is stopped on exit (trap); nothing outside 127.0.0.1 is contacted.
#
# Usage:
#   proxy-bench.sh [NAME=PORT[:PID] ...]
#
#   Extra targets are servers the CALLER started (e.g. the gateway under test) that listen on
#   127.0.0.1:PORT and forward to the backends 127.0.0.1:$B1_PORT and :$B2_PORT, which this
#   script starts (so a gateway that connects lazily may be started before this script).
#   PID is optional: it is only used for CPU accounting; without it the script looks the
#   listening process up with `ss` (read-only). With PIN=split, pin your target yourself:
#       taskset -c "$PROXY_CPUS" your-gateway ...
#
# Built-in targets (ANCHORS, in this order):
#   direct     wrk -> backend 1 directly (physical limit of one backend)
#   nginx      nginx proxy_pass, upstream of both backends, keepalive 64           (port 8181)
#   haproxy    HAProxy, nbthread 1, balance roundrobin, http-reuse always          (port 8182)
#   nginx_lreq nginx as above + limit_req per $binary_remote_addr, never rejecting  (port 8183)
#   (port 8184: nginx with limit_req 1r/s, only used by the startup check that 429s happen)
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION [10s]  CONNS [64]  THREADS [1]  URL_PATH [/]
#   WARMUP [2s] (per target before round 1; 0 = none)    SETTLE [1] (seconds between runs)
#   PIN [none]  CPU layout (taskset -c lists), presets on a 2-CPU box:
#                 none    : nothing pinned
#                 split   : WRK_CPUS=0, BACKEND_CPUS=1, PROXY_CPUS=1 (load generator vs. system)
#                 isolate : WRK_CPUS=0, BACKEND_CPUS=0, PROXY_CPUS=1 (proxy alone on a core)
#                 custom  : use WRK_CPUS / BACKEND_CPUS / PROXY_CPUS as given (empty = unpinned)
#               The anchor proxies go on PROXY_CPUS; pin your own targets there yourself.
#   ANCHORS ["direct nginx haproxy nginx_lreq"]   BASELINE [nginx] (ratio denominator)
#   B1_PORT [9001] B2_PORT [9002] NGINX_PORT [8181] HAPROXY_PORT [8182]
#   NGINX_LREQ_PORT [8183] NGINX_LOWRATE_PORT [8184]
#   OUT_DIR []  if set, raw wrk outputs, results.tsv and table.md are copied there
#   KEEP [0]    1 = keep the temporary work dir (configs, logs, raw output)
#
# Output: a markdown table on stdout: median req/s, p50, p99 over the rounds, the median
# (and min-max) of the per-round ratio req/s(target)/req/s(BASELINE), CPU time the target's
# process tree used per request (us), whole-box CPU busy %, and error counts.

set -euo pipefail

for a in "$@"; do
    case "$a" in
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    esac
done

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
URL_PATH=${URL_PATH:-/}
WARMUP=${WARMUP:-2s}
SETTLE=${SETTLE:-1}
PIN=${PIN:-none}
case "$PIN" in
    none) WRK_CPUS="" BACKEND_CPUS="" PROXY_CPUS="" ;;
    split) WRK_CPUS=${WRK_CPUS:-0} BACKEND_CPUS=${BACKEND_CPUS:-1} PROXY_CPUS=${PROXY_CPUS:-1} ;;
    isolate) WRK_CPUS=${WRK_CPUS:-0} BACKEND_CPUS=${BACKEND_CPUS:-0} PROXY_CPUS=${PROXY_CPUS:-1} ;;
    custom) WRK_CPUS=${WRK_CPUS:-} BACKEND_CPUS=${BACKEND_CPUS:-} PROXY_CPUS=${PROXY_CPUS:-} ;;
    *) echo "PIN must be none, split, isolate or custom" >&2; exit 1 ;;
esac
ANCHORS=${ANCHORS:-"direct nginx haproxy nginx_lreq"}
BASELINE=${BASELINE:-nginx}
B1_PORT=${B1_PORT:-9001}
B2_PORT=${B2_PORT:-9002}
NGINX_PORT=${NGINX_PORT:-8181}
HAPROXY_PORT=${HAPROXY_PORT:-8182}
NGINX_LREQ_PORT=${NGINX_LREQ_PORT:-8183}
NGINX_LOWRATE_PORT=${NGINX_LOWRATE_PORT:-8184}
OUT_DIR=${OUT_DIR:-}
KEEP=${KEEP:-0}

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
HOST=127.0.0.1

log() { printf '[proxy-bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for cmd in wrk nginx haproxy awk ps; do
    command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found (Debian: apt-get install wrk nginx haproxy procps)"
done
pfx_for() { [[ -n "$1" ]] && printf 'taskset\n-c\n%s\n' "$1"; return 0; }
if [[ -n "$WRK_CPUS$BACKEND_CPUS$PROXY_CPUS" ]]; then
    command -v taskset >/dev/null 2>&1 || die "pinning needs taskset (util-linux)"
fi
mapfile -t WRK_PFX < <(pfx_for "$WRK_CPUS")
mapfile -t BACKEND_PFX < <(pfx_for "$BACKEND_CPUS")
mapfile -t PROXY_PFX < <(pfx_for "$PROXY_CPUS")

# ------------------------------------------------------------------ targets ----
declare -a T_NAME=() T_PORT=() T_PID=() T_OWN=()
add_target() { T_NAME+=("$1"); T_PORT+=("$2"); T_PID+=("${3:-}"); T_OWN+=("${4:-0}"); }

for a in "$@"; do
    [[ "$a" =~ ^([A-Za-z0-9_.+-]+)=([0-9]+)(:([0-9]+))?$ ]] || die "bad target '$a' (want NAME=PORT or NAME=PORT:PID)"
done

WORK=$(mktemp -d -t proxy-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers may drop to an unprivileged user
declare -a PIDS=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    if [[ -n "${WRK_PID:-}" ]]; then kill -TERM "$WRK_PID" 2>/dev/null || true; wait "$WRK_PID" 2>/dev/null || true; fi
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$p" 2>/dev/null; then
            log "pid $p did not stop on TERM, sending KILL"
            kill -KILL "$p" 2>/dev/null || true
        fi
        wait "$p" 2>/dev/null || true
    done
    if [[ -n "$OUT_DIR" && -d "$WORK/raw" ]]; then
        mkdir -p "$OUT_DIR" && cp -r "$WORK/raw" "$WORK"/*.tsv "$WORK"/*.md "$WORK/header.txt" "$OUT_DIR"/ 2>/dev/null || true
    fi
    if [[ "$KEEP" == 1 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

wait_port() { # port pid label
    local i
    for i in $(seq 100); do
        port_open "$1" && return 0
        if [[ -n "${2:-}" ]] && ! kill -0 "$2" 2>/dev/null; then
            die "$3 (pid $2) exited before listening on :$1 - see $WORK/$3.log"
        fi
        sleep 0.1
    done
    die "$3 did not listen on :$1 within 10 s"
}

http_status() { # port path -> prints the status code of one HTTP/1.0 GET
    local line
    exec 4<>"/dev/tcp/$HOST/$1" || { echo 000; return; }
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$HOST" >&4
    IFS= read -r -t 5 line <&4 || line=""
    exec 4>&- 4<&-
    line=${line%$'\r'}
    echo "${line:9:3}"
}

needed_ports=("$B1_PORT" "$B2_PORT")
for an in $ANCHORS; do
    case "$an" in
        direct) ;;
        nginx) needed_ports+=("$NGINX_PORT") ;;
        haproxy) needed_ports+=("$HAPROXY_PORT") ;;
        nginx_lreq) needed_ports+=("$NGINX_LREQ_PORT") ;;
        *) die "unknown anchor '$an'" ;;
    esac
done
[[ " $ANCHORS " == *" nginx "* || " $ANCHORS " == *" nginx_lreq "* ]] && needed_ports+=("$NGINX_LOWRATE_PORT")
for p in "${needed_ports[@]}"; do
    port_open "$p" && die "port $p is already in use; set the *_PORT variables or stop what listens there"
done

# ------------------------------------------------------------------ configs ----
nginx_common() { # dir
    cat <<EOF
worker_processes 1;
worker_rlimit_nofile 65536;
error_log $1/error.log warn;
pid $1/nginx.pid;
events { worker_connections 16384; multi_accept on; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}

start_nginx() { # label port-for-wait prefix-array-name
    local d="$WORK/$1"
    local -n pfx=$3
    "${pfx[@]}" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" -g 'daemon off;' >"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$1=$!"
    wait_port "$2" "$!" "$1"
}

for b in 1 2; do
    port_var="B${b}_PORT"
    d="$WORK/backend$b"; mkdir -p "$d"
    {
        nginx_common "$d"
        cat <<EOF
    server {
        listen $HOST:${!port_var} backlog=4096;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
EOF
    } >"$d/nginx.conf"
    start_nginx "backend$b" "${!port_var}" BACKEND_PFX
done
log "backends up on :$B1_PORT :$B2_PORT"

proxy_location='proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection "";'
if [[ " $ANCHORS " == *" nginx "* || " $ANCHORS " == *" nginx_lreq "* ]]; then
    d="$WORK/nginxproxy"; mkdir -p "$d"
    {
        nginx_common "$d"
        cat <<EOF
    upstream backends {
        server $HOST:$B1_PORT;
        server $HOST:$B2_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    limit_req_zone \$binary_remote_addr zone=per_ip_high:10m rate=10000000r/s;
    limit_req_zone \$binary_remote_addr zone=per_ip_low:1m rate=1r/s;
    limit_req_status 429;
    server {
        listen $HOST:$NGINX_PORT backlog=4096;
        location / { $proxy_location }
    }
    server {
        listen $HOST:$NGINX_LREQ_PORT backlog=4096;
        location / { limit_req zone=per_ip_high burst=1000000 nodelay; $proxy_location }
    }
    server {
        listen $HOST:$NGINX_LOWRATE_PORT;
        location / { limit_req zone=per_ip_low; $proxy_location }
    }
}
EOF
    } >"$d/nginx.conf"
    start_nginx nginxproxy "$NGINX_PORT" PROXY_PFX
    wait_port "$NGINX_LREQ_PORT" "$PID_nginxproxy" nginxproxy
fi

if [[ " $ANCHORS " == *" haproxy "* ]]; then
    cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive
    http-reuse always
frontend fe
    bind $HOST:$HAPROXY_PORT
    default_backend be
backend be
    balance roundrobin
    server s1 $HOST:$B1_PORT
    server s2 $HOST:$B2_PORT
EOF
    "${PROXY_PFX[@]}" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
    PIDS+=($!)
    PID_haproxy=$!
    wait_port "$HAPROXY_PORT" "$PID_haproxy" haproxy
fi

for an in $ANCHORS; do
    case "$an" in
        direct) add_target direct "$B1_PORT" "$PID_backend1" 1 ;;
        nginx) add_target nginx "$NGINX_PORT" "$PID_nginxproxy" 1 ;;
        haproxy) add_target haproxy "$HAPROXY_PORT" "$PID_haproxy" 1 ;;
        nginx_lreq) add_target nginx_lreq "$NGINX_LREQ_PORT" "$PID_nginxproxy" 1 ;;
    esac
done
for a in "$@"; do
    [[ "$a" =~ ^([A-Za-z0-9_.+-]+)=([0-9]+)(:([0-9]+))?$ ]]
    name=${BASH_REMATCH[1]} port=${BASH_REMATCH[2]} pid=${BASH_REMATCH[4]:-}
    if [[ -z "$pid" ]] && command -v ss >/dev/null 2>&1; then
        pid=$(ss -ltnpH "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
    fi
    wait_port "$port" "" "$name"
    add_target "$name" "$port" "$pid" 0
done
[[ " ${T_NAME[*]} " == *" $BASELINE "* ]] || die "BASELINE '$BASELINE' is not among the targets"

# ------------------------------------------------------------ sanity checks ----
for i in "${!T_NAME[@]}"; do
    s=$(http_status "${T_PORT[$i]}" "$URL_PATH")
    [[ "$s" == 200 ]] || die "target ${T_NAME[$i]} (:${T_PORT[$i]}) answered '$s' instead of 200"
done
if port_open "$NGINX_LOWRATE_PORT" && [[ -n "${PID_nginxproxy:-}" ]]; then
    codes=""
    for _ in $(seq 10); do codes+="$(http_status "$NGINX_LOWRATE_PORT" "$URL_PATH") "; done
    n429=$(grep -o 429 <<<"$codes" | wc -l || true)
    log "limit_req 1r/s check, 10 quick requests -> $codes"
    (( n429 >= 8 )) || die "nginx limit_req at 1r/s did not reject (got: $codes)"
fi

# ------------------------------------------------------------------ helpers ----
CLK_TCK=$(getconf CLK_TCK)

tree_pids() { # pid -> pid and all descendants
    local p=$1 c
    echo "$p"
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done
}

tree_ticks() { # pid -> utime+stime ticks of the process tree (all threads)
    local total=0 p stat rest
    [[ -z "$1" ]] && { echo ""; return; }
    for p in $(tree_pids "$1"); do
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        rest=${stat##*) }
        read -r -a f <<<"$rest"
        total=$(( total + f[11] + f[12] ))
    done
    echo "$total"
}

box_ticks() { awk '/^cpu /{idle=$5+$6; t=0; for(i=2;i<=NF;i++) t+=$i; print t, idle}' /proc/stat; }

to_ms() { # wrk latency like 512.00us / 1.20ms / 2.00s
    awk -v v="$1" 'BEGIN{
        if (v ~ /us$/) { sub(/us$/,"",v); printf "%.3f", v/1000 }
        else if (v ~ /ms$/) { sub(/ms$/,"",v); printf "%.3f", v }
        else if (v ~ /m$/) { sub(/m$/,"",v); printf "%.3f", v*60000 }
        else if (v ~ /s$/) { sub(/s$/,"",v); printf "%.3f", v*1000 }
        else print "nan" }'
}

WRK_PID=""
run_wrk() { # port duration outfile; in the background so that a signal is handled at once
    "${WRK_PFX[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$2" --latency "http://$HOST:$1$URL_PATH" >"$3" 2>&1 &
    WRK_PID=$!
    local rc=0
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    return "$rc"
}

# ------------------------------------------------------------------ header ----
mkdir -p "$WORK/raw"
{
    echo "# proxy-bench $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    echo "# host: $(nproc) CPUs, $(uname -sr); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(nginx -v 2>&1 | cut -d: -f2 | tr -d ' '); $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3)"
    echo "# wrk -t$THREADS -c$CONNS -d$DURATION --latency http://$HOST:PORT$URL_PATH; rounds=$ROUNDS; warmup=$WARMUP; PIN=$PIN (wrk cpus: ${WRK_CPUS:-any}, backends: ${BACKEND_CPUS:-any}, anchor proxies: ${PROXY_CPUS:-any})"
    for i in "${!T_NAME[@]}"; do
        aff=""
        [[ -n "${T_PID[$i]}" ]] && command -v taskset >/dev/null && aff=$(taskset -pc "${T_PID[$i]}" 2>/dev/null | awk -F': ' '{print $2}')
        echo "# target ${T_NAME[$i]} :${T_PORT[$i]} pid=${T_PID[$i]:-?} cpus=${aff:-?}"
    done
} | tee "$WORK/header.txt" >&2

if [[ "$WARMUP" != 0 ]]; then
    for i in "${!T_NAME[@]}"; do
        log "warm-up ${T_NAME[$i]} ($WARMUP)"
        run_wrk "${T_PORT[$i]}" "$WARMUP" "$WORK/raw/warmup_${T_NAME[$i]}.txt" || log "warm-up of ${T_NAME[$i]} failed"
        sleep "$SETTLE"
    done
fi

# ------------------------------------------------------------------ rounds ----
RES="$WORK/results.tsv"
printf 'round\ttarget\trps\tp50_ms\tp99_ms\trequests\tnon2xx\tsock_err\tcpu_us_per_req\tbox_busy_pct\n' >"$RES"
for r in $(seq "$ROUNDS"); do
    for i in "${!T_NAME[@]}"; do
        name=${T_NAME[$i]} port=${T_PORT[$i]} pid=${T_PID[$i]}
        out="$WORK/raw/r${r}_${name}.txt"
        c0=$(tree_ticks "$pid"); read -r bt0 bi0 < <(box_ticks)
        run_wrk "$port" "$DURATION" "$out" || log "wrk exited non-zero for $name (see $out)"
        c1=$(tree_ticks "$pid"); read -r bt1 bi1 < <(box_ticks)
        rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
        reqs=$(awk '/requests in/{print $1}' "$out")
        p50=$(to_ms "$(awk '$1=="50%"{print $2}' "$out")")
        p99=$(to_ms "$(awk '$1=="99%"{print $2}' "$out")")
        non2xx=$(awk '/Non-2xx/{print $NF}' "$out"); non2xx=${non2xx:-0}
        sockerr=$(awk -F'[ ,]+' '/Socket errors/{s=0; for(i=1;i<=NF;i++) if ($i ~ /^[0-9]+$/) s+=$i; print s}' "$out"); sockerr=${sockerr:-0}
        cpu=nan
        if [[ -n "$c0" && -n "$c1" && -n "$reqs" && "$reqs" != 0 ]]; then
            cpu=$(awk -v a="$c0" -v b="$c1" -v n="$reqs" -v hz="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)/hz*1e6/n}')
        fi
        busy=$(awk -v t0="$bt0" -v t1="$bt1" -v i0="$bi0" -v i1="$bi1" 'BEGIN{d=t1-t0; printf "%.0f", (d>0)?100*(1-(i1-i0)/d):0}')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$name" "${rps:-0}" "$p50" "$p99" "${reqs:-0}" "$non2xx" "$sockerr" "$cpu" "$busy" >>"$RES"
        log "round $r/$ROUNDS $name: ${rps:-?} req/s, p50 ${p50} ms, p99 ${p99} ms, cpu ${cpu} us/req, box ${busy}% busy, non2xx ${non2xx}, sockerr ${sockerr}"
        sleep "$SETTLE"
    done
done

# ------------------------------------------------------------------- table ----
order=$(printf '%s ' "${T_NAME[@]}")
awk -F'\t' -v base="$BASELINE" -v order="$order" -v rounds="$ROUNDS" '
function med(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; j = i - 1; while (j > 0 && a[j] + 0 > t + 0) { a[j+1] = a[j]; j-- } a[j+1] = t }
    if (n == 0) return "nan"
    return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
function mn(s,  a, n, i, m) { n = split(s, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
function mx(s,  a, n, i, m) { n = split(s, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
NR == 1 { next }
{ rps[$2] = rps[$2] " " $3; p50[$2] = p50[$2] " " $4; p99[$2] = p99[$2] " " $5
  if ($9 != "nan") cpu[$2] = cpu[$2] " " $9
  busy[$2] = busy[$2] " " $10; err[$2] += $7 + $8; R[$1, $2] = $3 }
END {
    n = split(order, names, " ")
    for (i = 1; i <= n; i++) { t = names[i]
        for (r = 1; r <= rounds; r++) if (R[r, base] > 0) ratio[t] = ratio[t] " " sprintf("%.3f", R[r, t] / R[r, base]) }
    printf "| target | req/s (median) | ratio to %s (median of per-round) | ratio min-max | p50 ms | p99 ms | CPU us/req of target | box busy %% | errors |\n", base
    print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for (i = 1; i <= n; i++) { t = names[i]
        printf "| %s | %.0f | %.3f | %.3f-%.3f | %.3f | %.3f | %s | %s | %d |\n", t, med(rps[t]), med(ratio[t]), mn(ratio[t]), mx(ratio[t]), med(p50[t]), med(p99[t]), (cpu[t] == "" ? "n/a" : sprintf("%.1f", med(cpu[t]))), med(busy[t]), err[t] }
}' "$RES" | tee "$WORK/table.md"

log "done; raw per-round results:"
column -t -s$'\t' "$RES" >&2 2>/dev/null || cat "$RES" >&2
