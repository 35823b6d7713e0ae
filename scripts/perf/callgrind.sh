#!/usr/bin/env bash
# Instructions per cached redirect, counted by callgrind (repeatable on a noisy
# machine, unlike wall-clock figures). Needs the perf services and database that
# `PERF_KEEP_SERVICES=1 make perf` leaves behind, and a release build.
#   scripts/perf/callgrind.sh            # prints Ir/request and the top inclusive costs
# Output: .local/perf/callgrind.out (open with callgrind_annotate or kcachegrind).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
command -v valgrind >/dev/null || { echo "callgrind: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "callgrind: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
scripts/services.sh start perf >/dev/null
eval "$(scripts/services.sh env perf)"
db="${DATABASE_URL%/*}/perf_shortener"
out=.local/perf/callgrind.out
codes=$(mktemp)
port=${CALLGRIND_PORT:-5109}
psql "$db" -tAc "SELECT short_code FROM urls WHERE is_active ORDER BY id LIMIT 200" >"$codes"
env DATABASE_URL="$db" REDIS_URL="$REDIS_URL" HOST=127.0.0.1 PORT="$port" CACHE_TTL_SECONDS=600 \
    CACHE_KEY_PREFIX="cg$$:" WORKER_THREADS=1 \
    valgrind --tool=callgrind --callgrind-out-file="$out" target/release/url-shortener serve >/dev/null 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true; rm -f "$codes"' EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 1; done
total=0
for secs in 10 20; do # the first pass warms the caches
    n=$(PERF_LUA_DIR=scripts/perf PERF_CODES="$codes" wrk -t1 -c8 -d${secs}s -s scripts/perf/redirect.lua \
        "http://127.0.0.1:$port" | awk '/requests in/ { print $1 }')
    total=$((total + n))
done
kill -INT $pid
wait $pid || true
trap 'rm -f "$codes"' EXIT
ir=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "callgrind: $total redirects, $ir instructions, $((ir / total)) instructions per redirect (start-up included)"
callgrind_annotate --inclusive=yes "$out" 2>/dev/null | grep -E "shortener::|tracing|hyper::proto" | head -15 | cut -c1-160
