#!/usr/bin/env bash
# `make perf-clicks` (and the end of `make perf`): issue #11's targets, same run.
#
# - PostgreSQL CPU per click under the Zipf-skewed redirect load (s = 1 over the
#   100,000 seeded codes): CPU ticks of every process of the perf PostgreSQL
#   (postmaster and backends) during the load, divided by the clicks written; with
#   raw clicks off (CLICKS_RETENTION_DAYS=0), then on (30).
# - Storage per click after CLICKS_STORAGE_CLICKS (1,000,000) clicks over the 100,000
#   links: raw clicks (heap + indexes) and the rollups.
# - Clicks dropped (0 expected) and stats = redirects served.
# - Analytics p99 with the Valkey cache off: a year of hourly data for one link,
#   and a user with 10,000 links.
# Prints a table and writes it to PERF_CLICKS_OUT (perf/clicks.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
CARGO=${CARGO:-cargo}
DURATION=${PERF_DURATION:-20}
RUNS=${PERF_RUNS:-3}
CONNS=${PERF_CONNECTIONS:-64}
STORAGE_CLICKS=${CLICKS_STORAGE_CLICKS:-1000000}
PORT=${PERF_PORT:-5100}
OUT=${PERF_CLICKS_OUT:-perf/clicks.md}
BIN=${PERF_BIN_DIR:-target/release}/url-shortener
WORK="$ROOT/.local/perf/clicks"
DB=perf_clicks

log() { printf 'perf-clicks: %s\n' "$*" >&2; }
die() { printf 'perf-clicks: error: %s\n' "$*" >&2; exit 1; }
if ! command -v wrk >/dev/null; then
    log "installing wrk (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; } ||
        die "wrk is needed: apt-get install wrk"
fi
[[ ${PERF_SKIP_BUILD:-0} == 1 ]] || "$CARGO" build --release -q -p url-shortener
[[ -x $BIN ]] || die "missing $BIN"

SERVER_PID=""
SERVICES_WERE_UP=0
stop_server() {
    [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null || return 0
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
cleanup() {
    local rc=$?
    stop_server
    [[ $SERVICES_WERE_UP == 1 || ${PERF_KEEP_SERVICES:-0} == 1 ]] || scripts/services.sh stop perf >/dev/null 2>&1 || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/services.sh status perf >/dev/null 2>&1 && SERVICES_WERE_UP=1
scripts/services.sh start perf
eval "$(scripts/services.sh env perf)"
PGPORT=$(sed -E 's#.*:([0-9]+)/.*#\1#' <<<"$DATABASE_URL")
export PGHOST=127.0.0.1 PGPORT PGUSER=postgres
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
rm -rf "$WORK" && mkdir -p "$WORK" "$(dirname "$OUT")"

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
export DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$DB"
"$BIN" migrate >/dev/null
log "seeding 10,000 users and 100,000 URLs"
"$BIN" seed --users 10000 --urls 100000 >/dev/null
q "COPY (SELECT short_code FROM urls WHERE is_active ORDER BY id) TO STDOUT" >"$WORK/codes.txt"
q "VACUUM ANALYZE" >/dev/null
export PERF_LUA_DIR="$ROOT/scripts/perf" PERF_CODES="$WORK/codes.txt"
# A browser's agent, so the clicks count as human (no agent at all counts as a bot).
export PERF_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"

start_server() { # ENV=VALUE...
    stop_server
    env HOST=127.0.0.1 PORT="$PORT" ACCESS_LOG=false CACHE_KEY_PREFIX="pc$(date +%s%N):" "$@" \
        "$BIN" serve >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$WORK/server.log" >&2; die "server exited"; }
        sleep 0.1
    done
    die "server not ready"
}
metric() {
    curl -sf "http://127.0.0.1:$PORT/metrics" |
        awk -v n="$1" -v f="${2:-}" '($1 == n || index($1, n "{") == 1) && index($1, f) { s += $2 } END { printf "%d\n", s }'
}
found() { metric redirects_total 'result="found"'; }
# Every process of the perf PostgreSQL: its postmaster and all its children.
PGDATA_DIR=$(psql -X -At -d postgres -c "SHOW data_directory")
pg_ticks() {
    local master t=0 p
    master=$(head -n1 "$PGDATA_DIR/postmaster.pid")
    for p in "$master" $(pgrep -P "$master"); do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
HZ=$(getconf CLK_TCK)
clicks_written() { q "SELECT coalesce(sum(clicks), 0) FROM click_link_hourly"; }
# Waits until the rollups hold every click the server counted as served.
settle() {
    local want=$1 i
    for i in $(seq 100); do
        [[ $(clicks_written) -ge $want ]] && return 0
        sleep 0.1
    done
}
wrk_zipf() { # SECONDS CONNECTIONS [extra wrk args]
    wrk -t1 -c"$2" -d"$1s" --timeout 5s -s scripts/perf/redirect_zipf.lua "http://127.0.0.1:$PORT" >"$WORK/wrk.out" 2>&1 || true
    grep -h '^PERFJSON ' "$WORK/wrk.out" | sed 's/^PERFJSON //'
}

: >"$WORK/rows.tsv"
row() { printf '%s\t%s\n' "$1" "$2" >>"$WORK/rows.tsv"; log "$1: $2"; }

# --- PostgreSQL CPU per click, raw clicks off then on ---
for retention in 0 30; do
    start_server CLICKS_RETENTION_DAYS=$retention
    before_warm=$(clicks_written)
    wrk_zipf 5 "$CONNS" >/dev/null # warm the near cache and Valkey
    warmed=$(found)
    settle $((before_warm + warmed))
    for r in $(seq "$RUNS"); do
        base_clicks=$(clicks_written)
        base_found=$(found)
        t0=$(pg_ticks)
        json=$(wrk_zipf "$DURATION" "$CONNS")
        found=$(($(found) - base_found))
        settle $((base_clicks + found))
        t1=$(pg_ticks)
        written=$(($(clicks_written) - base_clicks))
        us=$(python3 -c "print(f'{($t1 - $t0) * 1e6 / $HZ / max($written, 1):.2f}')")
        rps=$(python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['rps']))" "$json")
        echo "$retention $us $rps $found $written" >>"$WORK/cpu.txt"
        log "retention $retention run $r: $rps req/s, $found redirects, $written clicks written, PostgreSQL $us µs per click"
    done
    dropped=$(metric clicks_dropped_total)
    row "clicks dropped (retention $retention)" "$dropped"
done
python3 - "$WORK/cpu.txt" >>"$WORK/rows.tsv" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for ret, label in (("0", "raw off (rollups only)"), ("30", "raw on (30 days)")):
    r = [x for x in rows if x[0] == ret]
    us = statistics.median(float(x[1]) for x in r)
    rps = statistics.median(float(x[2]) for x in r)
    exact = all(x[3] == x[4] for x in r)
    print(f"PostgreSQL CPU per click, {label}\t{us:.2f} µs (median of {len(r)}; runs {', '.join(x[1] for x in r)}; {rps:.0f} req/s; clicks written = redirects served: {'yes' if exact else 'NO'})")
PY

# --- storage per click: STORAGE_CLICKS clicks over the 100,000 links ---
stop_server
psql -X -q -d "$DB" -c "TRUNCATE clicks, click_link_hourly, click_user_hourly, click_global_hourly, click_link_daily, click_user_daily, click_user_daily_links"
start_server CLICKS_RETENTION_DAYS=30
# PERF_ZIPF_S=0: every link alike, the worst case for the rollups' size.
secs=$((STORAGE_CLICKS / 15000 + 5))
log "storage: ~$STORAGE_CLICKS clicks over $secs s"
base=$(found)
while true; do
    now=$(found)
    ((now - base < STORAGE_CLICKS)) || break
    PERF_ZIPF_S=0.0 wrk_zipf 10 "$CONNS" >/dev/null
done
served=$(($(found) - base))
settle "$served"
stop_server # the last breakdown flush happens on shutdown
written=$(clicks_written)
q "VACUUM ANALYZE" >/dev/null
raw=$(q "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits WHERE inhparent = 'clicks'::regclass")
roll=$(q "SELECT sum(pg_total_relation_size(c)) FROM unnest(array['click_link_hourly','click_user_hourly','click_global_hourly','click_link_daily','click_user_daily','click_user_daily_links']::regclass[]) c")
row "storage after $written clicks over 100,000 links" "raw $((raw / written)) B/click ($((raw / 1048576)) MiB); rollups $((roll / written)) B/click ($((roll / 1048576)) MiB, kept forever: $(q "SELECT count(*) FROM click_link_hourly") link-hours, $(q "SELECT count(*) FROM click_link_daily") link-day-values)"

# --- analytics p99, cache off ---
link=$(q "SELECT id FROM urls ORDER BY id LIMIT 1")
owner=$(q "SELECT user_id FROM urls WHERE id = $link")
user=$(q "SELECT u.id FROM users u WHERE u.id <> $owner ORDER BY u.id LIMIT 1")
log "analytics data: a year of hours for url $link, 10,000 links for user $user"
psql -X -q -d "$DB" <<SQL
INSERT INTO click_link_hourly (url_id, hour, user_id, clicks, bot_clicks, last_at)
SELECT $link, h, $owner, 1 + (extract(epoch FROM h)::int8 % 7), 0, h FROM generate_series(date_trunc('hour', now()) - interval '365 days', date_trunc('hour', now()), interval '1 hour') h
ON CONFLICT DO NOTHING;
INSERT INTO urls (user_id, short_code, original_url) SELECT $user, 'pa' || g, 'https://example.com/' || g FROM generate_series(1, 10000) g ON CONFLICT DO NOTHING;
INSERT INTO click_user_hourly (user_id, hour, clicks, bot_clicks)
SELECT $user, h, 100, 3 FROM generate_series(date_trunc('hour', now()) - interval '365 days', date_trunc('hour', now()), interval '1 hour') h ON CONFLICT DO NOTHING;
INSERT INTO click_user_daily_links (user_id, day, url_id, clicks, bot_clicks)
SELECT $user, d::date, u.id, 1 + u.id % 5, 0 FROM urls u, generate_series(current_date - 29, current_date, interval '1 day') d WHERE u.user_id = $user ON CONFLICT DO NOTHING;
INSERT INTO click_user_daily (user_id, day, dim, value, clicks, bot_clicks)
SELECT $user, d::date, 'referrer', 'host' || v, 10, 1 FROM generate_series(current_date - 364, current_date, interval '1 day') d, generate_series(1, 50) v ON CONFLICT DO NOTHING;
VACUUM ANALYZE;
SQL
start_server CACHE_ENABLED=false
p99() { # LABEL PATH
    cat >"$WORK/a.lua" <<LUA
package.path = "$ROOT/scripts/perf/?.lua;" .. package.path
local lib = require("lib")
request = function() return wrk.format("GET", "$2") end
done = lib.done
LUA
    local out
    out=$(wrk -t1 -c4 -d"${DURATION}s" --timeout 5s -s "$WORK/a.lua" "http://127.0.0.1:$PORT" 2>&1 | grep '^PERFJSON ' | sed 's/^PERFJSON //')
    row "$1" "$(python3 -c "import json,sys; j=json.loads(sys.argv[1]); print(f\"p99 {j['p99_us']/1000:.1f} ms, p50 {j['p50_us']/1000:.1f} ms, {j['rps']:.0f} req/s, errors {j['errors']}\")" "$out")"
}
p99 "analytics, one link, a year of hours (granularity=hour, 8,761 buckets)" "/analytics?url_id=$link&interval=1y&granularity=hour"
p99 "analytics, one link, a year by day" "/analytics?url_id=$link&interval=1y&granularity=day"
p99 "analytics, user with 10,000 links, a year by month" "/analytics?user_id=$user&interval=1y"
p99 "analytics, user with 10,000 links, top 10 links over 30 days" "/analytics?user_id=$user&interval=30d&group_by=top_urls"
p99 "analytics, user, top referrers over a year" "/analytics?user_id=$user&interval=1y&group_by=referrers"
p99 "stats, one link (a year of hours)" "/urls/$link/stats"

{
    echo "# Clicks (issue #11): \`make perf-clicks\`, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| measure | result |"
    echo "|---|---|"
    awk -F'\t' '{ printf "| %s | %s |\n", $1, $2 }' "$WORK/rows.tsv"
} | tee "$OUT"
