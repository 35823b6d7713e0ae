#!/usr/bin/env bash
# `make test` and CI: lint, then the whole workspace's tests against throwaway
# services (test profile: PostgreSQL, Valkey and a sentinel group), which are
# stopped at the end whatever happens. DATABASE_URL / REDIS_URL /
# VALKEY_SENTINELS from the environment are used instead, service by service.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO=${CARGO:-cargo}
MAKE=${MAKE:-make}

# Lint first: it needs no services and fails fastest.
"$MAKE" --no-print-directory lint
# mk/*.mk may add deployment checks (k8s manifests, Dockerfile, ...).
if [[ -n "${HAVE_LINT_DEPLOY:-}" ]]; then
    "$MAKE" --no-print-directory lint-deploy
fi

given_db=${DATABASE_URL:-}
given_redis=${REDIS_URL:-}
given_sentinels=${VALKEY_SENTINELS:-}

cleanup() {
    local rc=$?
    scripts/services.sh stop test || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/services.sh start test
[[ -n "$given_sentinels" ]] || scripts/services.sh sentinel-start test
eval "$(scripts/services.sh env test)"
[[ -n "$given_db" ]] && export DATABASE_URL="$given_db"
[[ -n "$given_redis" ]] && export REDIS_URL="$given_redis"
if [[ -n "$given_sentinels" ]]; then
    export VALKEY_SENTINELS="$given_sentinels"
    export VALKEY_SENTINEL_MASTER=${VALKEY_SENTINEL_MASTER:-mymaster}
fi
echo "test: DATABASE_URL=$DATABASE_URL REDIS_URL=$REDIS_URL VALKEY_SENTINELS=${VALKEY_SENTINELS:-}" >&2

# A stale capture must not pass the cross-check below; the lifecycle tests write it anew.
rm -f target/metrics-sample.txt
"$CARGO" test --workspace --all-targets
if [[ -n "${HAVE_LINT_DEPLOY:-}" ]]; then
    scripts/lint-deploy.sh --metrics-only
fi
