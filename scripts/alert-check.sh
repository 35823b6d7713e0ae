#!/usr/bin/env bash
# `make alert-check`: do the alerts fire when, and only when, they should, and
# reach the right receiver? Real components, all on 127.0.0.1, time-scaled.
#
# Usage: scripts/alert-check.sh [--factor N | --real-durations]
#        scripts/alert-check.sh --prometheus URL --alertmanager URL [--host URL]
#                               [--duration 30m] [--expect A,B] [--until-resolved] [-- GOOSE ARGS]
#
# Local mode (the default):
#   1. installs Debian's prometheus and prometheus-alertmanager if missing (their
#      packaged services are not used: we run the binaries with our own configs);
#   2. builds the release server and the loadtest crate;
#   3. starts PostgreSQL and Valkey (scripts/services.sh, perf profile), recreates
#      the `alertcheck` database on it, migrates and seeds it;
#   4. hands over to scripts/alert_check/run.py: webhook sink, fault proxy, server,
#      Alertmanager and Prometheus with configs derived from monitoring/ (every
#      duration divided by one factor, 15 unless --factor / ALERT_CHECK_FACTOR
#      says otherwise; --real-durations or ALERT_CHECK_REAL_DURATIONS=1 is 1),
#      goose through healthy / latency / errors / recovery, then the timeline
#      and its checks (also in .local/alert-check/timeline.txt).
# Cluster mode (--prometheus and --alertmanager): no local component and no
#   fault injection (the operator injects the faults); goose drives --host and
#   the timeline is read from the cluster's Prometheus and Alertmanager.
# Exit status: 0 every check passed, 1 a check failed (named), 2 the harness
# could not run. Everything started here is stopped again, on failure too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO=${CARGO:-cargo}
WORK="$ROOT/.local/alert-check"
DB_NAME=alertcheck
PG_PORT=54349
VK_PORT=63819

log() { printf 'alert-check: %s\n' "$*" >&2; }
die() { printf 'alert-check: error: %s\n' "$*" >&2; exit 2; }
have() { command -v "$1" >/dev/null 2>&1; }

mode=local
run_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --real-durations) run_args+=(--real-durations) ;;
        --factor) [[ $# -ge 2 ]] || die "--factor needs a number"; run_args+=(--factor "$2"); shift ;;
        --factor=*) run_args+=(--factor "${1#*=}") ;;
        --prometheus|--alertmanager|--host|--duration|--expect)
            [[ $# -ge 2 ]] || die "$1 needs a value"
            [[ $1 == --prometheus || $1 == --alertmanager ]] && mode=cluster
            run_args+=("$1" "$2"); shift ;;
        --until-resolved) run_args+=("$1") ;;
        --) run_args+=("$@"); break ;;
        -h|--help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
if [[ ${ALERT_CHECK_REAL_DURATIONS:-0} == 1 && $mode == local ]]; then
    run_args+=(--real-durations)
fi
mkdir -p "$WORK"

# === install ===

install_packages() {
    local missing=()
    have prometheus && have promtool || missing+=(prometheus)
    have prometheus-alertmanager && have amtool || missing+=(prometheus-alertmanager)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    have apt-get || die "apt-get not found: install ${missing[*]} by hand"
    [[ $EUID -eq 0 ]] || have sudo || die "need root to install ${missing[*]}"
    local sudo=(); [[ $EUID -eq 0 ]] || sudo=(sudo)
    log "installing ${missing[*]} (Debian packages)"
    # The packages start their own services on install; we run the binaries
    # ourselves on loopback ports, so keep the package scripts from starting them.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        "${sudo[@]}" sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
        made_policy=1
    fi
    local rc=0
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || {
        log "apt-get install failed; refreshing the package lists and retrying"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    } || rc=$?
    [[ $made_policy -eq 1 ]] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    [[ $rc -eq 0 ]] || die "apt-get install ${missing[*]} failed"
    if [[ -d /run/systemd/system ]] && have systemctl; then
        "${sudo[@]}" systemctl disable --now prometheus prometheus-alertmanager >/dev/null 2>&1 || true
    fi
}

# === cleanup ===

started_services=0
py_pid=
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $py_pid ]] && kill -0 "$py_pid" 2>/dev/null; then
        kill -TERM "$py_pid" 2>/dev/null || true
        wait "$py_pid" 2>/dev/null || true
    fi
    if [[ $started_services -eq 1 ]]; then
        log "stopping the perf services this run started"
        scripts/services.sh stop perf || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run.py in the background, so a TERM to this script reaches it at once.
run_py() {
    python3 scripts/alert_check/run.py "$@" &
    py_pid=$!
    local rc=0
    wait "$py_pid" || rc=$?
    py_pid=
    return $rc
}

start=$(date +%s)
if [[ $mode == cluster ]]; then
    log "building loadtest (release)"
    "$CARGO" build --release -p loadtest
    run_py cluster "${run_args[@]}"
    exit $?
fi

install_packages
log "prometheus $(prometheus --version 2>&1 | head -n1 | awk '{print $3}'), alertmanager $(prometheus-alertmanager --version 2>&1 | head -n1 | awk '{print $3}')"
log "building the server and loadtest (release)"
"$CARGO" build --release -p url-shortener -p loadtest

# Services: leave them as found (stop only what this run started).
if ! scripts/services.sh status perf >/dev/null 2>&1; then
    started_services=1
fi
# A DATABASE_URL / REDIS_URL in the caller's environment would make services.sh
# skip its own; this check always uses the perf profile's.
env -u DATABASE_URL -u REDIS_URL scripts/services.sh start perf
PSQL=$(command -v psql || find /usr/lib/postgresql -path "*/bin/psql" 2>/dev/null | sort -V | tail -n1)
[[ -x "$PSQL" ]] || die "psql not found"
# A database of its own, new every run: the perf data stays untouched and the
# seeded size is the same every time.
"$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" -c "CREATE DATABASE $DB_NAME" >/dev/null
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$DB_NAME"
export REDIS_URL="redis://127.0.0.1:$VK_PORT/"
log "migrating and seeding $DB_NAME"
target/release/url-shortener migrate >"$WORK/migrate.log" 2>&1 || { tail -n 20 "$WORK/migrate.log" >&2; die "migrate failed"; }
target/release/url-shortener seed --users 1000 --urls 20000 >"$WORK/seed.log" 2>&1 ||
    { tail -n 20 "$WORK/seed.log" >&2; die "seed failed"; }
unset DATABASE_URL REDIS_URL
log "setup took $(( $(date +%s) - start ))s"

rc=0
run_py local --db-upstream "127.0.0.1:$PG_PORT" --db-name "$DB_NAME" \
    --redis-url "redis://127.0.0.1:$VK_PORT/" "${run_args[@]}" || rc=$?
log "total $(( $(date +%s) - start ))s, exit $rc"
exit $rc
