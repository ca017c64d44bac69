#!/usr/bin/env bash
# schemathesis against the admin API, as .ci/run runs it: once on SQLite, once on PostgreSQL.
#
# Installs schemathesis from PyPI into target/schemathesis-venv (pinned), builds the gateway,
# and for each database starts it on free ports with an admin token, waits for /readyz, and
# runs every phase of schemathesis (examples, coverage, fuzzing, stateful) on the document
# the gateway serves at /openapi.json, with every check but two. Among them:
#   not_a_server_error           no 5xx;
#   status_code_conformance      every status is one the operation documents;
#   content_type_conformance     every answer has the documented media type;
#   response_schema_conformance  every body matches the documented schema;
#   response_headers_conformance documented headers (Location, WWW-Authenticate) are right;
#   negative_data_rejection      what breaks the schema is refused with a 4xx (the schema
#                                describes the API's strictness, not less);
#   ignored_auth                 the protected operations refuse a request without the token;
#   use_after_free, ensure_resource_availability, unsupported_method, missing_required_header.
# Not run:
#   positive_data_acceptance: the schema describes the form of a body, not all of its meaning
#     (an `ips` entry must parse as an address, a rate must be a multiple of 0.001, `offset`
#     and `after` exclude each other, an id or URL may be taken), so some schema-valid
#     requests are refused by design (422/409);
#   allow_header_conformance: `/clients/batch` is also the client whose id is `batch` for
#     GET/PUT/PATCH/DELETE (the batch resource is guarded on POST), so a 405 there lists the
#     methods of `/clients/{client_id}`, which the check reads as undocumented.
# The run happens in a network namespace of its own (unshare --net) with only loopback: the
# generated `POST /backends` bodies name arbitrary hosts, and the gateway health-checks every
# backend it is given; there, those checks fail at once and no traffic leaves the machine.
# PostgreSQL is reached there through its Unix socket.
#
# Prints the number of generated test cases per database; fails on any failure or error.
#
# Environment: CARGO_TARGET_DIR (default target), SCHEMATHESIS_MAX_EXAMPLES (default 100 per
# operation and phase), SCHEMATHESIS_SEED (default 1), SCHEMATHESIS_DATABASES (default
# "sqlite postgres"), SCHEMATHESIS_CHECKS / SCHEMATHESIS_EXCLUDE_CHECKS (to try others),
# PGUSER (default postgres). Reports (JUnit, the gateway's log) go to target/schemathesis.
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."

SCHEMATHESIS_VERSION=4.32.5
TOKEN=schemathesis-admin-token-0123456789
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
work=$(pwd)/target/schemathesis
venv=$(pwd)/target/schemathesis-venv
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-100}

die() { echo "schemathesis.sh: $*" >&2; exit 1; }

# One run, inside the namespace: `inner NAME DATABASE_URL`.
inner() {
    local name=$1 url=$2 log=$work/$1-gateway.log pid admin=""
    ip link set lo up || die "cannot bring up loopback in the network namespace"
    "$target/debug/tollgate" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --admin-token "$TOKEN" --database-url "$url" --health-interval 1s --log info \
        >"$log" 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
    for _ in $(seq 300); do
        admin=$(sed -n 's/.*admin API on http:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -n 1)
        [ -n "$admin" ] && break
        kill -0 $pid 2>/dev/null || { cat "$log" >&2; die "$name: the gateway exited at start"; }
        sleep 0.1
    done
    [ -n "$admin" ] || { cat "$log" >&2; die "$name: the gateway did not report its admin address"; }
    for _ in $(seq 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$admin/readyz")" = 200 ] && break
        sleep 0.1
    done
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$admin/readyz")" = 200 ] \
        || { cat "$log" >&2; die "$name: /readyz never answered 200"; }
    echo "schemathesis: $name: gateway on $admin"
    local out=$work/$name-report.txt status=0
    # From $work: schemathesis keeps its cache (.schemathesis/) in the working directory.
    (cd "$work" && "$venv/bin/schemathesis" run "http://$admin/openapi.json" \
        --header "Authorization: Bearer $TOKEN" \
        --checks "${SCHEMATHESIS_CHECKS:-all}" \
        --exclude-checks "${SCHEMATHESIS_EXCLUDE_CHECKS-positive_data_acceptance,allow_header_conformance}" \
        --max-examples "$max_examples" --seed "${SCHEMATHESIS_SEED:-1}" --workers 1 \
        --report junit --report-junit-path "$work/$name-junit.xml") \
        2>&1 | tee "$out" || status=$?
    kill $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    trap - EXIT
    # ERROR lines are expected (the generated backends are unreachable); a panic is not.
    if grep -q 'panicked' "$log"; then
        grep -B2 -A5 'panicked' "$log" | head -n 40 >&2
        die "$name: the gateway panicked (whole log: $log)"
    fi
    local cases
    # The summary says "Test cases:" and, on the next line, "N generated, N passed, ...".
    cases=$(awk '/^Test cases:/ { getline; print }' "$out" | sed -n 's/^ *\([0-9][0-9]*\) generated.*/\1/p')
    [ -n "$cases" ] || die "$name: no 'Test cases: N generated' line in the schemathesis output"
    echo "schemathesis: $name: $cases generated test cases (exit $status)"
    [ "$status" = 0 ] || die "$name: schemathesis failed (report: $out)"
}

if [ "${1:-}" = --inner ]; then
    shift
    inner "$@"
    exit 0
fi

command -v unshare >/dev/null || die "unshare (util-linux) is needed"
command -v ip >/dev/null || die "ip (iproute2) is needed"
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed"

mkdir -p "$work"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
    echo "schemathesis: installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
        || die "pip install schemathesis==$SCHEMATHESIS_VERSION failed"
fi
"$venv/bin/schemathesis" --version

echo "schemathesis: cargo build --bin tollgate"
cargo build --bin tollgate
[ -x "$target/debug/tollgate" ] || die "no $target/debug/tollgate after the build"

for db in ${SCHEMATHESIS_DATABASES:-sqlite postgres}; do
    case $db in
    sqlite)
        file=$work/sqlite.db
        rm -f "$file" "$file"-*
        unshare --net "$self" --inner sqlite "sqlite://$file" \
            || die "sqlite run failed"
        ;;
    postgres)
        user=${PGUSER:-postgres}
        psql=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U "$user" -d postgres)
        "${psql[@]}" -c 'select 1' >/dev/null || die "PostgreSQL is not reachable on 127.0.0.1:5432 as $user"
        socket_dir=$("${psql[@]}" -Atc 'show unix_socket_directories' | cut -d, -f1 | xargs)
        [ -S "$socket_dir/.s.PGSQL.5432" ] || die "no PostgreSQL socket in '$socket_dir' (the run's namespace reaches it only there)"
        dbname=tollgate_schemathesis_$$
        "${psql[@]}" -c "create database $dbname"
        status=0
        # libpq lets `host=` in the query (the socket directory) override the URL's host,
        # which the gateway's configuration requires.
        unshare --net "$self" --inner postgres "postgres://$user@localhost/$dbname?host=$socket_dir" \
            || status=$?
        "${psql[@]}" -c "drop database if exists $dbname with (force)" || true
        [ "$status" = 0 ] || die "postgres run failed"
        ;;
    *) die "unknown database $db (sqlite, postgres)" ;;
    esac
done
echo "schemathesis: every run passed"
