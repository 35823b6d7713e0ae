#!/usr/bin/env bash
# `make run`: local services (dev profile), build, migrate, seed, then serve in
# the foreground. DATABASE_URL / REDIS_URL from the environment win over the
# dev profile's, service by service.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO=${CARGO:-cargo}
given_db=${DATABASE_URL:-}
given_redis=${REDIS_URL:-}

scripts/services.sh start dev
eval "$(scripts/services.sh env dev)"
[[ -n "$given_db" ]] && export DATABASE_URL="$given_db"
[[ -n "$given_redis" ]] && export REDIS_URL="$given_redis"
export PORT=${PORT:-5000}

"$CARGO" build --release -p url-shortener
bin=target/release/url-shortener
"$bin" migrate
"$bin" seed --from-csv fixtures/original-seed
echo "run: serving on port $PORT (services keep running; 'make stop' stops them)" >&2
exec "$bin" serve
