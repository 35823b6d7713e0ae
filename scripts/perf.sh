#!/usr/bin/env bash
# `make perf`: the same-run load harness of issue 4, on loopback only.
#
# In one go: the perf services (PostgreSQL 54349, Valkey 63819, as `make run`
# starts its own), a fresh database (migrate, seed 10,000 users and 100,000 URLs),
# the release server (PERF_PORT, 5100) and the ceiling (PERF_CEILING_PORT, 5101),
# then every scenario with wrk (and pgbench for the database baselines), each
# PERF_RUNS times (3) for PERF_DURATION seconds (10). Prints one table and writes
# it to PERF_OUT (perf/results.md), which PERF.md quotes. Everything it started is
# stopped on exit (trap), including the services unless they were already up or
# PERF_KEEP_SERVICES=1 (then `make bench` can use them for the e2e redirect bench).
#
# Pinning (PERF_PIN=1, the default on 2+ cores): the server under test (and the
# ceiling) on core 0, the load generator (wrk, pgbench) on core 1. PostgreSQL and
# Valkey are not pinned: the kernel puts them where there is room.
#
# Knobs: PERF_RUNS, PERF_DURATION, PERF_CONNECTIONS (64), PERF_FULL=1 (uncached
# reads at 10,000 and 1,000,000 URLs too), PERF_SKIP_BUILD=1, PERF_BIN_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

CARGO=${CARGO:-cargo}
RUNS=${PERF_RUNS:-3}
DURATION=${PERF_DURATION:-10}
CONNS=${PERF_CONNECTIONS:-64}
FULL=${PERF_FULL:-0}
PORT=${PERF_PORT:-5100}
CEIL_PORT=${PERF_CEILING_PORT:-5101}
OUT=${PERF_OUT:-perf/results.md}
BIN_DIR=${PERF_BIN_DIR:-target/release}
USERS=10000
URLS=100000
WORK="$ROOT/.local/perf/run"
M="$WORK/measure"
PREFIX="perf$(date +%s):"
# Own database names: the perf services may be shared with other tools (alert checks).
DB=perf_shortener
PGB_DB=perf_pgbench # a fresh cache namespace per run: no stale entries, no FLUSHALL

log() { printf 'perf: %s\n' "$*" >&2; }
die() { printf 'perf: error: %s\n' "$*" >&2; exit 1; }

# === tools ===

if ! command -v wrk >/dev/null; then
    log "installing wrk (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; } ||
        die "wrk is needed: apt-get install wrk"
fi
for tool in curl python3 taskset; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

CORES=$(nproc)
PIN=${PERF_PIN:-$([[ $CORES -ge 2 ]] && echo 1 || echo 0)}
if [[ $PIN == 1 ]]; then
    ON_SERVER=(taskset -c 0)
    ON_LOADGEN=(taskset -c 1)
    WRK_THREADS=1
else
    ON_SERVER=()
    ON_LOADGEN=()
    WRK_THREADS=$CORES
fi

# === cleanup ===

SERVER_PID=""
CEILING_PID=""
SAMPLER_PID=""
SERVICES_WERE_UP=0
stop_pid() { # PID [grace seconds]
    local pid=$1 grace=${2:-20} i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    stop_pid "$SAMPLER_PID" 1
    stop_pid "$SERVER_PID"
    stop_pid "$CEILING_PID" 2
    if [[ $SERVICES_WERE_UP == 0 && ${PERF_KEEP_SERVICES:-0} != 1 ]]; then
        scripts/services.sh stop perf >/dev/null 2>&1 || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# === build, services, data ===

if [[ ${PERF_SKIP_BUILD:-0} != 1 ]]; then
    log "release build (server and ceiling)"
    "$CARGO" build --release -q -p url-shortener -p benches --bins
fi
SERVER_BIN="$BIN_DIR/url-shortener"
CEILING_BIN="$BIN_DIR/ceiling"
[[ -x "$SERVER_BIN" && -x "$CEILING_BIN" ]] || die "missing $SERVER_BIN or $CEILING_BIN"
for p in "$PORT" "$CEIL_PORT"; do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && die "port $p is in use"
done

scripts/services.sh status perf >/dev/null 2>&1 && SERVICES_WERE_UP=1
scripts/services.sh start perf
eval "$(scripts/services.sh env perf)"
PGHOST=127.0.0.1
PGPORT=$(sed -E 's#.*:([0-9]+)/.*#\1#' <<<"$DATABASE_URL")
export PGHOST PGPORT PGUSER=postgres
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -d "$@"; }

rm -rf "$WORK"
mkdir -p "$M"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$WORK/rows.tsv"
: >"$WORK/notes.md"
note() { printf '%s\n' "$*" >>"$WORK/notes.md"; log "$*"; }

fresh_db() { # NAME USERS URLS
    local db=$1
    psql_q postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$db" "$SERVER_BIN" migrate >/dev/null
    log "seeding $db: $2 users, $3 URLs"
    DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$db" timeout 600 \
        "$SERVER_BIN" seed --users "$2" --urls "$3" >/dev/null
    psql_q "$db" -c "VACUUM ANALYZE"
}
fresh_db "$DB" "$USERS" "$URLS"
psql_q "$DB" -c "COPY (SELECT short_code, original_url FROM urls WHERE is_active ORDER BY id) TO STDOUT" >"$WORK/codes.tsv"
log "$(wc -l <"$WORK/codes.tsv") active codes"
# pgbench -S's own table, at the same row count as urls (scale 1 = 100,000 accounts).
psql_q postgres -c "DROP DATABASE IF EXISTS $PGB_DB WITH (FORCE)" -c "CREATE DATABASE $PGB_DB"
pgbench -i -q -s 1 "$PGB_DB" >/dev/null 2>&1

export PERF_LUA_DIR="$ROOT/scripts/perf" PERF_CODES="$WORK/codes.tsv" PERF_USERS=$USERS PERF_MAX_ID=$URLS

# === processes under test ===

start_server() { # ENV=VALUE...
    stop_pid "$SERVER_PID"
    # Keep the error lines of the previous server, not its access log (hundreds of MB).
    if [[ -f "$WORK/server.log" ]]; then
        grep '"level":"ERROR"' "$WORK/server.log" >>"$WORK/errors.log" || true
        : >"$WORK/server.log"
    fi
    env DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$DB" HOST=127.0.0.1 PORT="$PORT" LOG_LEVEL=info CACHE_KEY_PREFIX="$PREFIX" "$@" \
        "${ON_SERVER[@]}" "$SERVER_BIN" serve >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    local i
    for ((i = 0; i < 300; i++)); do
        curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$WORK/server.log" >&2; die "server exited"; }
        sleep 0.1
    done
    die "server not ready within 30 s"
}

start_ceiling() {
    "${ON_SERVER[@]}" "$CEILING_BIN" --port "$CEIL_PORT" --codes "$WORK/codes.tsv" >"$WORK/ceiling.log" 2>&1 &
    CEILING_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$CEIL_PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    die "ceiling did not start"
}

# metric NAME [LABEL-FILTER]: the sum of a counter's series in /metrics.
metric() {
    curl -sf "http://127.0.0.1:$PORT/metrics" |
        awk -v n="$1" -v f="${2:-}" '($1 == n || index($1, n "{") == 1) && index($1, f) { s += $2 } END { printf "%d\n", s }'
}

# settle_clicks: waits (at most 10 s) until every redirect this server found is a
# click recorded or dropped. Clicks are counted when they are flushed (every
# CLICKS_FLUSH_INTERVAL_MS, 1 s), not when they are served. Every redirect here is a
# GET (a HEAD is no click) to an active code, so the two totals meet.
settle_clicks() {
    local i found recorded dropped
    for ((i = 0; i < 100; i++)); do
        found=$(metric redirects_total 'result="found"')
        recorded=$(metric clicks_recorded_total)
        dropped=$(metric clicks_dropped_total)
        ((recorded + dropped >= found)) && return 0
        sleep 0.1
    done
    log "clicks: after 10 s, $found redirects found but $recorded clicks recorded and $dropped dropped"
}

# === load ===

# wrk_once LABEL SCRIPT PORT CONNECTIONS [SECONDS]: one run, its PERFJSON appended.
wrk_once() {
    local label=$1 script=$2 port=$3 c=$4 secs=${5:-$DURATION} t=$WRK_THREADS
    ((c < t)) && t=$c
    timeout $((secs + 30)) "${ON_LOADGEN[@]}" wrk -t"$t" -c"$c" -d"${secs}s" --timeout 5s \
        -s "scripts/perf/$script" "http://127.0.0.1:$port" >"$WORK/wrk.out" 2>&1 || true
    if ! grep -h '^PERFJSON ' "$WORK/wrk.out" | sed 's/^PERFJSON //' >>"$M/$label.jsonl"; then
        cat "$WORK/wrk.out" >&2
        die "wrk gave no summary for $label"
    fi
    log "$label: $(tail -n1 "$M/$label.jsonl")"
}

# pgbench_once LABEL ARGS...: one run at PERF_CONNECTIONS clients.
pgbench_once() {
    local label=$1; shift
    rm -f "$WORK"/pgb_log*
    timeout $((DURATION + 60)) "${ON_LOADGEN[@]}" pgbench -n -M prepared -c "$CONNS" -j 1 \
        -T "$DURATION" -l --log-prefix="$WORK/pgb_log" "$@" >"$WORK/pgbench.out" 2>&1 || {
        cat "$WORK/pgbench.out" >&2; die "pgbench failed for $label"; }
    python3 scripts/perf/report.py pgbench "$WORK/pgbench.out" "$WORK/pgb_log" >>"$M/$label.jsonl"
    log "$label: $(tail -n1 "$M/$label.jsonl")"
}

row() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$WORK/rows.tsv"; }

# CPU time (clock ticks, user + system) of a process, or of every process of a name.
ticks_pid() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
ticks_user() { awk '{ print $14 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
ticks_name() {
    local p t=0
    for p in $(pgrep -x "$1"); do t=$((t + $(ticks_pid "$p"))); done
    echo "$t"
}
HZ=$(getconf CLK_TCK)

rss_start() { # PID: samples VmRSS (KiB) twice a second into rss.txt
    : >"$WORK/rss.txt"
    (while kill -0 "$1" 2>/dev/null; do
        awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
        sleep 0.5
    done) >>"$WORK/rss.txt" &
    SAMPLER_PID=$!
}
rss_stop() { stop_pid "$SAMPLER_PID" 1; SAMPLER_PID=""; sort -n "$WORK/rss.txt" | tail -n1 | awk '{ printf "%.1f", $1 / 1024 }'; }

warm() {
    log "warming the cache: one pass over every active code (at most 120 s)"
    local started=$SECONDS
    timeout 150 "${ON_LOADGEN[@]}" wrk -t1 -c"$CONNS" -d120s --timeout 5s \
        -s scripts/perf/warm.lua "http://127.0.0.1:$PORT" >"$WORK/warm.out" 2>&1 || true
    log "$(grep -h '^warm:' "$WORK/warm.out" || echo 'warm: did not finish the pass') in $((SECONDS - started)) s"
    sleep 1 # cache fills are fire-and-forget
}

# fresh_runs LABEL SCRIPT ENV=VALUE...: a server with that environment, a warm pass,
# then RUNS measurements with SCRIPT at CONNS connections.
fresh_runs() {
    local label=$1 script=$2 r
    shift 2
    start_server CACHE_TTL_SECONDS=600 ACCESS_LOG=true "$@"
    warm
    for ((r = 0; r < RUNS; r++)); do
        wrk_once "$label" "$script" "$PORT" "$CONNS"
    done
}

# === (a) cached redirect vs the ceiling, (e) scaling ===

start_server CACHE_TTL_SECONDS=600 ACCESS_LOG=true
start_ceiling
warm
settle_clicks # the warm pass's clicks belong to no measured run
before_found=$(metric redirects_total 'result="found"')
before_recorded=$(metric clicks_recorded_total) # bot="true" and bot="false"
before_hit=$(metric cache_operations_total 'result="hit"')
before_miss=$(metric cache_operations_total 'result="miss"')
rss_start "$SERVER_PID"
# Where the CPU goes during the measured runs (the cause of the gap to the ceiling):
# the server, PostgreSQL (writing the clicks) and Valkey, against the ceiling.
cpu_srv=0 cpu_srv_user=0 cpu_pg=0 cpu_valkey=0 cpu_ceil=0 cpu_ceil_user=0 srv_secs=0 ceil_secs=0
for ((r = 0; r < RUNS; r++)); do
    a=$(ticks_pid "$SERVER_PID") au=$(ticks_user "$SERVER_PID") b=$(ticks_name postgres) v=$(ticks_name valkey-server) t0=$SECONDS
    wrk_once redirect_64 redirect.lua "$PORT" "$CONNS"
    cpu_srv=$((cpu_srv + $(ticks_pid "$SERVER_PID") - a)) cpu_srv_user=$((cpu_srv_user + $(ticks_user "$SERVER_PID") - au))
    cpu_pg=$((cpu_pg + $(ticks_name postgres) - b)) cpu_valkey=$((cpu_valkey + $(ticks_name valkey-server) - v))
    a=$(ticks_pid "$CEILING_PID") au=$(ticks_user "$CEILING_PID")
    wrk_once ceiling_64 redirect.lua "$CEIL_PORT" "$CONNS"
    cpu_ceil=$((cpu_ceil + $(ticks_pid "$CEILING_PID") - a)) cpu_ceil_user=$((cpu_ceil_user + $(ticks_user "$CEILING_PID") - au))
done
rss=$(rss_stop)
settle_clicks
found=$(($(metric redirects_total 'result="found"') - before_found))
recorded=$(($(metric clicks_recorded_total) - before_recorded))
hits=$(($(metric cache_operations_total 'result="hit"') - before_hit))
misses=$(($(metric cache_operations_total 'result="miss"') - before_miss))
dropped=$(metric clicks_dropped_total)
# The rollups hold every click of this fresh database: the warm pass and the runs.
db_clicks=$(psql_q "$DB" -tAc "SELECT coalesce(sum(clicks), 0) FROM click_link_hourly")
all_found=$(metric redirects_total 'result="found"')
row "cached redirect GET /{code}, $CONNS conns" redirect_64 ceiling_64 "ceiling (bare hyper, in-memory map)"
row "ceiling GET /{code}, $CONNS conns" ceiling_64 - -
note "- Cached redirect at $CONNS connections: server RSS peak under load ${rss} MiB (target < 64 MiB)."
note "- Clicks: $found redirects found during the measured runs, $recorded clicks recorded (difference $((found - recorded))); clicks_dropped_total = $dropped. Since start: $all_found redirects, $db_clicks clicks in click_link_hourly."
note "- Cache during the measured runs: $hits hits, $misses misses (cache_operations_total, all layers)."
# CPU per request from the wrk request counts of the same runs.
python3 scripts/perf/report.py cpu "$M/redirect_64.jsonl" "$M/ceiling_64.jsonl" "$HZ" \
    "$cpu_srv" "$cpu_srv_user" "$cpu_pg" "$cpu_valkey" "$cpu_ceil" "$cpu_ceil_user" "$recorded" >>"$WORK/notes.md"
tail -n 1 "$WORK/notes.md" >&2

for c in 1 16 256; do
    for ((r = 0; r < RUNS; r++)); do
        wrk_once "redirect_$c" redirect.lua "$PORT" "$c"
    done
    row "scaling: cached redirect, $c conns" "redirect_$c" - -
done

# Access log off: what the one JSON line per request costs.
fresh_runs redirect_64_nolog redirect.lua ACCESS_LOG=false # the last assignment wins
row "cached redirect, ACCESS_LOG=false, $CONNS conns" redirect_64_nolog redirect_64 "same, ACCESS_LOG=true"

# Near cache off: every redirect goes to Valkey, what the in-process layer saves.
start_server CACHE_TTL_SECONDS=600 ACCESS_LOG=true NEAR_CACHE_CAPACITY=0
warm
for ((r = 0; r < RUNS; r++)); do
    wrk_once redirect_64_nonear redirect.lua "$PORT" "$CONNS"
    wrk_once ceiling_64_b redirect.lua "$CEIL_PORT" "$CONNS"
done
row "cached redirect, near cache off (Valkey only), $CONNS conns" redirect_64_nonear ceiling_64_b "ceiling, same minutes"
stop_pid "$CEILING_PID" 2
CEILING_PID=""

# === runtime tuning: each knob against the defaults' cached-redirect figures ===

fresh_runs redirect_64_nodelay_off redirect.lua TCP_NODELAY=false
row "tuning: TCP_NODELAY=false, $CONNS conns" redirect_64_nodelay_off redirect_64 "TCP_NODELAY=true (default)"

# Not pinned, a worker per core: the server shares both cores with wrk and the databases.
SAVED_PIN=("${ON_SERVER[@]}")
ON_SERVER=()
fresh_runs redirect_64_unpinned redirect.lua WORKER_THREADS=2
ON_SERVER=("${SAVED_PIN[@]}")
row "tuning: server unpinned, WORKER_THREADS=2, $CONNS conns" redirect_64_unpinned redirect_64 "pinned to one core, 1 worker (default here)"

# HTTP/1 pipelining (PERF_PIPELINE requests per write): one flush per batch or per response.
fresh_runs redirect_pipelined redirect_pipelined.lua
fresh_runs redirect_pipelined_flush redirect_pipelined.lua HTTP1_PIPELINE_FLUSH=true
row "tuning: pipelined x16, HTTP1_PIPELINE_FLUSH=false (default), $CONNS conns" redirect_pipelined redirect_64 "not pipelined"
row "tuning: pipelined x16, HTTP1_PIPELINE_FLUSH=true, $CONNS conns" redirect_pipelined_flush redirect_pipelined "HTTP1_PIPELINE_FLUSH=false"

# === (b) uncached GET /urls/{id} vs pgbench -S ===

start_server CACHE_ENABLED=false ACCESS_LOG=true
for ((r = 0; r < RUNS; r++)); do
    wrk_once get_url_uncached get_url.lua "$PORT" "$CONNS"
    pgbench_once pgbench_S -S "$PGB_DB"
    pgbench_once pgbench_select_url -f scripts/perf/pgbench-select-url.sql -D max_id=$URLS "$DB"
done
row "uncached GET /urls/{id}, $CONNS conns" get_url_uncached pgbench_S "pgbench -S -M prepared, $CONNS clients"
row "pgbench: URL_GET by id, $CONNS clients" pgbench_select_url pgbench_S "pgbench -S -M prepared"

# === (c) POST /urls vs pgbench inserts, (d) the old service's mix ===

start_server ACCESS_LOG=true
before_created=$(metric events_written_total 'event_type="created"')
for ((r = 0; r < RUNS; r++)); do
    wrk_once create_url create_url.lua "$PORT" "$CONNS"
    pgbench_once pgbench_insert_url -f scripts/perf/pgbench-insert-url.sql -D users=$USERS "$DB"
done
created=$(($(metric events_written_total 'event_type="created"') - before_created))
row "POST /urls (url + event, one tx), $CONNS conns" create_url pgbench_insert_url "pgbench insert url + event, $CONNS clients"
row "pgbench insert url + event, $CONNS clients" pgbench_insert_url - -
note "- POST /urls: $created \`created\` events written by the server during its runs."

for ((r = 0; r < RUNS; r++)); do
    wrk_once mix mix.lua "$PORT" "$CONNS"
done
row "old service's mix (locustfile weights), $CONNS conns" mix - -
p95=$(python3 scripts/perf/report.py median "$M" mix p95_us)
note "- Mix p95: $(awk -v u="$p95" 'BEGIN { printf "%.2f ms", u / 1000 }')."

# === (e) uncached reads as the table grows ===

if [[ $FULL == 1 ]]; then
    for n in 10000 1000000; do
        db="${DB}_$n"
        fresh_db "$db" "$USERS" "$n"
        start_server CACHE_ENABLED=false ACCESS_LOG=true DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$db"
        for ((r = 0; r < RUNS; r++)); do
            PERF_MAX_ID=$n wrk_once "get_url_uncached_$n" get_url.lua "$PORT" "$CONNS"
        done
        row "scaling: uncached GET /urls/{id}, $n URLs" "get_url_uncached_$n" get_url_uncached "same, 100,000 URLs"
        stop_pid "$SERVER_PID"
        SERVER_PID=""
        psql_q postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    done
fi

stop_pid "$SERVER_PID"
SERVER_PID=""

# === report ===

grep '"level":"ERROR"' "$WORK/server.log" >>"$WORK/errors.log" 2>/dev/null || true
if [[ -s "$WORK/errors.log" ]]; then
    note "- The server logged $(wc -l <"$WORK/errors.log") ERROR lines (.local/perf/run/errors.log)."
fi
mkdir -p "$(dirname "$OUT")"
model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
commit=${PERF_REVISION:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
dirty=""
if git status --porcelain -- server 2>/dev/null | grep -q .; then
    dirty=" + uncommitted server/ changes"
fi
{
    echo "# make perf: results"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $commit$dirty; $CORES cores ($model); \`make perf\` (PERF_RUNS=$RUNS, PERF_DURATION=${DURATION}s, PERF_FULL=$FULL)."
    echo "Medians of $RUNS runs. wrk $(wrk -v 2>&1 | head -n1 | awk '{ print $2 }'), pgbench $(pgbench --version | awk '{ print $3 }');"
    echo "Load average (1/5/15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared; figures above ~2 mean other work competed)."
    if [[ $PIN == 1 ]]; then
        echo "server and ceiling pinned to core 0, wrk and pgbench to core 1 (taskset); PostgreSQL and Valkey unpinned."
    else
        echo "no pinning."
    fi
    echo
    python3 scripts/perf/report.py table "$WORK/rows.tsv" "$M" "$WORK/notes.md"
    echo
    echo "## Every measurement"
    echo
    python3 scripts/perf/report.py detail "$M"
} >"$OUT"
echo
cat "$OUT"
log "written to $OUT"
