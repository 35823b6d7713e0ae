#!/usr/bin/env bash
# What one redirect event costs PostgreSQL, index by index: inserts ROWS (200,000)
# redirect-shaped rows with INSERT ... SELECT (no client, no parameter encoding)
# into a copy of the `events` table, first with its primary key only, then adding
# the migration's three indexes one at a time. Uses the perf services (started if
# needed) and a scratch database it drops afterwards. PERF.md#where-the-time-goes.
#   scripts/perf/event-cost.sh [ROWS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rows=${1:-200000}
export PGOPTIONS="-c client_min_messages=warning"
scripts/services.sh start perf >/dev/null
eval "$(scripts/services.sh env perf)"
admin="${DATABASE_URL%/*}/postgres"
db=perf_event_cost
psql -X -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
trap 'psql -X -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
url="${DATABASE_URL%/*}/$db"
psql -X -q "$url" -v ON_ERROR_STOP=1 -f migrations/0003_create_events.sql
psql -X -q "$url" -v ON_ERROR_STOP=1 <<SQL
DROP INDEX events_url_id_idx, events_user_id_idx, events_event_type_idx;
CREATE TABLE source AS
SELECT (random() * 99999)::int8 + 1 AS url_id, (random() * 9999)::int8 + 1 AS user_id,
       'redirect'::text AS event_type, now()::timestamp AS ts,
       jsonb_build_object('short_code', substr(md5(i::text), 1, 7)) AS details
FROM generate_series(1, $rows) i;
SQL
run() { # LABEL: truncate, insert every source row, print the time per row
    local ms
    psql -X -q "$url" -c "TRUNCATE events" -c "CHECKPOINT" >/dev/null
    ms=$(psql -X -q "$url" -c '\timing on' \
        -c 'INSERT INTO events (url_id, user_id, event_type, "timestamp", details) SELECT * FROM source' |
        awk '/^Time:/ { print $2 }')
    awk -v l="$1" -v ms="$ms" -v n="$rows" 'BEGIN { printf "%-48s %8.0f ms  %5.1f µs per row\n", l, ms, ms * 1000 / n }'
}
run "primary key only"
psql -X -q "$url" -c "CREATE INDEX events_event_type_idx ON events (event_type, id)"
run "+ (event_type, id)"
psql -X -q "$url" -c "CREATE INDEX events_url_id_idx ON events (url_id, id)"
run "+ (url_id, id)"
psql -X -q "$url" -c "CREATE INDEX events_user_id_idx ON events (user_id, id)"
run "+ (user_id, id): the schema as migrated"
