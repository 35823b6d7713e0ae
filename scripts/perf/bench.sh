#!/usr/bin/env bash
# `make bench`: every criterion bench of the `benches` crate. Extra arguments go to
# criterion (e.g. `scripts/perf/bench.sh router` to filter, `--save-baseline main`).
#
# The in-process end-to-end redirect bench (e2e/redirect_cached) needs a seeded
# database and a Valkey: when the perf services run (`PERF_KEEP_SERVICES=1 make
# perf` leaves them up, seeded), their URLs are passed as BENCH_DATABASE_URL and
# BENCH_REDIS_URL; otherwise that one bench is skipped and says so.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
CARGO=${CARGO:-cargo}

if [[ -z "${BENCH_DATABASE_URL:-}" ]] && scripts/services.sh status perf >/dev/null 2>&1; then
    eval "$(scripts/services.sh env perf)"
    # perf.sh's database (its own name: the perf services may be shared).
    export BENCH_DATABASE_URL="${DATABASE_URL%/*}/perf_shortener" BENCH_REDIS_URL="$REDIS_URL"
fi
exec "$CARGO" bench -p benches --benches -- "$@"
