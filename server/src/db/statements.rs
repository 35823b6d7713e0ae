//! Every SQL statement the service runs, as documented constants. All of them are
//! prepared when a pooled connection is created (see `db::pool`), so a schema
//! mismatch fails start-up and `/ready`, not the first request.
//!
//! List endpoints have one statement per filter combination rather than
//! `($1 IS NULL OR col = $1)`: a generic plan for the latter cannot use the indexes.

macro_rules! user_cols {
    () => {
        "id, username, email, created_at"
    };
}
macro_rules! url_cols {
    () => {
        "id, user_id, short_code, original_url, title, is_active, created_at, updated_at"
    };
}
macro_rules! event_cols {
    () => {
        "id, url_id, user_id, event_type, \"timestamp\", details"
    };
}

// === users ===

/// $1 username, $2 email → user row. Unique violation on `users_email_lower_key` = 409.
pub const USER_INSERT: &str = concat!(
    "INSERT INTO users (username, email) VALUES ($1, $2) RETURNING ",
    user_cols!()
);
/// $1 id → user row.
pub const USER_GET: &str = concat!("SELECT ", user_cols!(), " FROM users WHERE id = $1");
/// $1 id → user row, locked for an update in the same transaction.
pub const USER_GET_FOR_UPDATE: &str = concat!(
    "SELECT ",
    user_cols!(),
    " FROM users WHERE id = $1 FOR UPDATE"
);
/// $1 limit, $2 offset → user rows by id.
pub const USER_LIST: &str = concat!(
    "SELECT ",
    user_cols!(),
    " FROM users ORDER BY id LIMIT $1 OFFSET $2"
);
/// $1 id, $2 username, $3 email → user row.
pub const USER_UPDATE: &str = concat!(
    "UPDATE users SET username = $2, email = $3 WHERE id = $1 RETURNING ",
    user_cols!()
);
/// $1 id → id of the deleted user.
pub const USER_DELETE: &str = "DELETE FROM users WHERE id = $1 RETURNING id";
/// $1 user id → (id, short_code) of each URL deleted with its user.
pub const URLS_DELETE_BY_USER: &str =
    "DELETE FROM urls WHERE user_id = $1 RETURNING id, short_code";
/// Blocks concurrent user inserts while a bulk import moves the id sequence.
pub const USERS_LOCK: &str = "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE";
/// $1 ids, $2 usernames, $3 emails, $4 created_at → (rows written, ids that existed before).
pub const USERS_BULK_UPSERT: &str = "WITH up AS (
    INSERT INTO users (id, username, email, created_at)
    SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::timestamp[])
    ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username, email = EXCLUDED.email,
                                   created_at = EXCLUDED.created_at
    RETURNING id, (xmax <> 0) AS existed)
  SELECT count(*), coalesce(array_agg(id) FILTER (WHERE existed), '{}') FROM up";
/// Moves the users id sequence past the largest id (never backwards), so POST /users never collides.
pub const USERS_SEQUENCE_SYNC: &str = "SELECT setval('users_id_seq',
    GREATEST((SELECT coalesce(max(id), 1) FROM users), (SELECT last_value FROM users_id_seq)))";
/// $1 user id → whether the user exists.
pub const USER_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)";

// === urls ===

/// $1 user_id, $2 short_code, $3 original_url, $4 title → url row, or no row when the code is taken.
/// A missing user is a foreign-key violation (404).
pub const URL_INSERT: &str = concat!(
    "INSERT INTO urls (user_id, short_code, original_url, title) VALUES ($1, $2, $3, $4) ",
    "ON CONFLICT (short_code) DO NOTHING RETURNING ",
    url_cols!()
);
/// $1 id → url row.
pub const URL_GET: &str = concat!("SELECT ", url_cols!(), " FROM urls WHERE id = $1");
/// $1 id → url row, locked for an update in the same transaction.
pub const URL_GET_FOR_UPDATE: &str = concat!(
    "SELECT ",
    url_cols!(),
    " FROM urls WHERE id = $1 FOR UPDATE"
);
/// $1 id, $2 title, $3 is_active, $4 original_url → url row with `updated_at` moved.
pub const URL_UPDATE: &str = concat!(
    "UPDATE urls SET title = $2, is_active = $3, original_url = $4, ",
    "updated_at = (now() AT TIME ZONE 'UTC') WHERE id = $1 RETURNING ",
    url_cols!()
);
/// $1 id → the deleted url row.
pub const URL_DELETE: &str = concat!("DELETE FROM urls WHERE id = $1 RETURNING ", url_cols!());
/// $1 short_code → (id, user_id, is_active, original_url): the redirect lookup.
pub const URL_LINK_BY_CODE: &str =
    "SELECT id, user_id, is_active, original_url FROM urls WHERE short_code = $1";
/// $1 url id → whether the url exists.
pub const URL_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM urls WHERE id = $1)";
/// $1 limit, $2 offset.
pub const URL_LIST: &str = concat!(
    "SELECT ",
    url_cols!(),
    " FROM urls ORDER BY id LIMIT $1 OFFSET $2"
);
/// $1 user_id, $2 limit, $3 offset.
pub const URL_LIST_BY_USER: &str = concat!(
    "SELECT ",
    url_cols!(),
    " FROM urls WHERE user_id = $1 ORDER BY id LIMIT $2 OFFSET $3"
);
/// $1 is_active, $2 limit, $3 offset.
pub const URL_LIST_BY_ACTIVE: &str = concat!(
    "SELECT ",
    url_cols!(),
    " FROM urls WHERE is_active = $1 ORDER BY id LIMIT $2 OFFSET $3"
);
/// $1 user_id, $2 is_active, $3 limit, $4 offset.
pub const URL_LIST_BY_USER_ACTIVE: &str = concat!(
    "SELECT ",
    url_cols!(),
    " FROM urls WHERE user_id = $1 AND is_active = $2 ORDER BY id LIMIT $3 OFFSET $4"
);

// === events ===

/// $1 url_id, $2 user_id, $3 event_type, $4 details → event row.
pub const EVENT_INSERT: &str = concat!(
    "INSERT INTO events (url_id, user_id, event_type, details) VALUES ($1, $2, $3, $4) RETURNING ",
    event_cols!()
);
/// Which rows an event list reads: the log's own rows of one type, or those and
/// the raw clicks (as `redirect` events) interleaved by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// No type filter: every event, and every click of the retention window.
    All,
    /// `event_type=redirect`: clicks, and redirect rows not yet moved out of `events`.
    Redirects,
    /// Any other `event_type`: the event log only.
    Typed,
}

/// The event list statements, one per source and combination of the url_id / user_id
/// filters (bit 0 url_id, bit 1 user_id). Parameters: the filters in that order, then
/// event_type (Typed only), then limit and offset. Each side of
/// a union reads at most limit + offset rows in id order from its own index, so a
/// page costs the same whatever the tables' size (the offset is bounded by the page
/// window).
pub fn event_list(source: EventSource, which: usize) -> &'static str {
    static ALL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let mut v = Vec::with_capacity(12);
        for source in [EventSource::All, EventSource::Redirects, EventSource::Typed] {
            for which in 0..4 {
                v.push(build_event_list(source, which));
            }
        }
        v
    });
    let s = match source {
        EventSource::All => 0,
        EventSource::Redirects => 1,
        EventSource::Typed => 2,
    };
    &ALL[s * 4 + (which & 3)]
}

fn build_event_list(source: EventSource, which: usize) -> String {
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    let mut conds = Vec::new();
    if which & 1 != 0 {
        conds.push(format!("url_id = {}", next()));
    }
    if which & 2 != 0 {
        conds.push(format!("user_id = {}", next()));
    }
    // Raw clicks have no user_id index: a user's clicks are those of its links.
    let click_conds: Vec<String> = conds
        .iter()
        .map(|c| match c.strip_prefix("user_id = ") {
            Some(p) => format!("url_id IN (SELECT id FROM urls WHERE user_id = {p})"),
            None => c.clone(),
        })
        .collect();
    match source {
        EventSource::All => {}
        EventSource::Redirects => conds.push("event_type = 'redirect'".into()),
        EventSource::Typed => conds.push(format!("event_type = {}", next())),
    }
    let (limit, offset) = (next(), next());
    let filter = |c: &[String]| {
        if c.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", c.join(" AND "))
        }
    };
    let events = format!(
        "SELECT {} FROM events{} ORDER BY id",
        event_cols!(),
        filter(&conds)
    );
    if source == EventSource::Typed {
        return format!("{events} LIMIT {limit} OFFSET {offset}");
    }
    let clicks = format!(
        "SELECT id, url_id, user_id, 'redirect'::text, clicked_at, \
         jsonb_strip_nulls(jsonb_build_object('short_code', short_code, 'referrer', referrer, 'user_agent', user_agent)) \
         FROM clicks{} ORDER BY id",
        filter(&click_conds)
    );
    format!(
        "SELECT * FROM (({events} LIMIT {limit}::int8 + {offset}::int8) \
         UNION ALL ({clicks} LIMIT {limit}::int8 + {offset}::int8)) page \
         ORDER BY id LIMIT {limit} OFFSET {offset}"
    )
}

/// Liveness of the database for `/ready`.
pub const PING: &str = "SELECT 1";

/// $1 the timeout as text (`120000ms`): raises statement_timeout until the end of the
/// current transaction (`set_config(..., true)` is `SET LOCAL`, with a parameter).
pub const SET_LOCAL_STATEMENT_TIMEOUT: &str = "SELECT set_config('statement_timeout', $1, true)";

// === clicks (see clicks::rollup) ===

/// $1 batch id → a row when this flush is new (claimed), none when already applied.
pub const CLICK_BATCH_CLAIM: &str =
    "INSERT INTO click_batches (batch_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1";

/// Arrays: url_id, hour, user_id, clicks, bot_clicks, last_at.
pub const CLICK_LINK_HOURLY_UPSERT: &str = "INSERT INTO click_link_hourly AS t \
     (url_id, hour, user_id, clicks, bot_clicks, last_at) \
     SELECT * FROM unnest($1::int8[], $2::timestamptz[], $3::int8[], $4::int8[], $5::int8[], $6::timestamptz[]) \
     ON CONFLICT (url_id, hour) DO UPDATE SET clicks = t.clicks + EXCLUDED.clicks, \
     bot_clicks = t.bot_clicks + EXCLUDED.bot_clicks, last_at = GREATEST(t.last_at, EXCLUDED.last_at)";

/// Arrays: user_id, hour, clicks, bot_clicks.
pub const CLICK_USER_HOURLY_UPSERT: &str = "INSERT INTO click_user_hourly AS t \
     (user_id, hour, clicks, bot_clicks) \
     SELECT * FROM unnest($1::int8[], $2::timestamptz[], $3::int8[], $4::int8[]) \
     ON CONFLICT (user_id, hour) DO UPDATE SET clicks = t.clicks + EXCLUDED.clicks, \
     bot_clicks = t.bot_clicks + EXCLUDED.bot_clicks";

/// Arrays: hour, clicks, bot_clicks, unknown_hits, inactive_hits.
pub const CLICK_GLOBAL_HOURLY_UPSERT: &str = "INSERT INTO click_global_hourly AS t \
     (hour, clicks, bot_clicks, unknown_hits, inactive_hits) \
     SELECT * FROM unnest($1::timestamptz[], $2::int8[], $3::int8[], $4::int8[], $5::int8[]) \
     ON CONFLICT (hour) DO UPDATE SET clicks = t.clicks + EXCLUDED.clicks, \
     bot_clicks = t.bot_clicks + EXCLUDED.bot_clicks, \
     unknown_hits = t.unknown_hits + EXCLUDED.unknown_hits, \
     inactive_hits = t.inactive_hits + EXCLUDED.inactive_hits";

/// Arrays: url_id, day, dim, value, clicks, bot_clicks.
pub const CLICK_LINK_DAILY_UPSERT: &str = "INSERT INTO click_link_daily AS t \
     (url_id, day, dim, value, clicks, bot_clicks) \
     SELECT * FROM unnest($1::int8[], $2::date[], $3::text[], $4::text[], $5::int8[], $6::int8[]) \
     ON CONFLICT (url_id, day, dim, value) DO UPDATE SET clicks = t.clicks + EXCLUDED.clicks, \
     bot_clicks = t.bot_clicks + EXCLUDED.bot_clicks";

/// Arrays: user_id, day, dim, value, clicks, bot_clicks.
pub const CLICK_USER_DAILY_UPSERT: &str = "INSERT INTO click_user_daily AS t \
     (user_id, day, dim, value, clicks, bot_clicks) \
     SELECT * FROM unnest($1::int8[], $2::date[], $3::text[], $4::text[], $5::int8[], $6::int8[]) \
     ON CONFLICT (user_id, day, dim, value) DO UPDATE SET clicks = t.clicks + EXCLUDED.clicks, \
     bot_clicks = t.bot_clicks + EXCLUDED.bot_clicks";

/// Arrays: user_id, day, url_id, clicks, bot_clicks.
pub const CLICK_USER_DAILY_LINKS_UPSERT: &str = "INSERT INTO click_user_daily_links AS t \
     (user_id, day, url_id, clicks, bot_clicks) \
     SELECT * FROM unnest($1::int8[], $2::date[], $3::int8[], $4::int8[], $5::int8[]) \
     ON CONFLICT (user_id, day, url_id) DO UPDATE SET clicks = t.clicks + EXCLUDED.clicks, \
     bot_clicks = t.bot_clicks + EXCLUDED.bot_clicks";

/// COPY of moved redirect events, keeping their ids.
pub const CLICKS_COPY_WITH_IDS: &str = "COPY clicks (id, clicked_at, url_id, user_id, short_code, referrer, user_agent, is_bot) FROM STDIN (FORMAT binary)";

/// COPY of raw clicks (binary; ids from the events sequence by default).
pub const CLICKS_COPY: &str = "COPY clicks (clicked_at, url_id, user_id, short_code, referrer, user_agent, is_bot) FROM STDIN (FORMAT binary)";

// === analytics (rollups only) ===

/// $1 url_id → all-time clicks, bot clicks, last click.
pub const ANALYTICS_LINK_TOTALS: &str = "SELECT coalesce(sum(clicks), 0)::int8, \
     coalesce(sum(bot_clicks), 0)::int8, max(last_at) FROM click_link_hourly WHERE url_id = $1";
pub const ANALYTICS_LINK_FIRST_HOUR: &str =
    "SELECT min(hour) FROM click_link_hourly WHERE url_id = $1";
pub const ANALYTICS_USER_FIRST_HOUR: &str =
    "SELECT min(hour) FROM click_user_hourly WHERE user_id = $1";
/// $1 id, $2 start, $3 end → the hours with clicks, in order: (hour, clicks, bot
/// clicks). Bucketed into local time by the caller (chrono-tz): `AT TIME ZONE` per
/// row cost PostgreSQL ~10 µs a row, 90 ms for a year of hours.
pub const ANALYTICS_LINK_SERIES: &str = "SELECT hour, clicks, bot_clicks FROM click_link_hourly \
     WHERE url_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour";
pub const ANALYTICS_USER_SERIES: &str = "SELECT hour, clicks, bot_clicks FROM click_user_hourly \
     WHERE user_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour";
/// $1 id, $2 dim, $3 first day, $4 last day, $5 exclude bots, $6 limit → (value, clicks).
pub const ANALYTICS_LINK_BREAKDOWN: &str = "SELECT value, \
     (sum(clicks) - CASE WHEN $5 THEN sum(bot_clicks) ELSE 0 END)::int8 AS n \
     FROM click_link_daily WHERE url_id = $1 AND day >= $3 AND day <= $4 AND dim = $2 \
     GROUP BY value HAVING (sum(clicks) - CASE WHEN $5 THEN sum(bot_clicks) ELSE 0 END) > 0 \
     ORDER BY n DESC, value LIMIT $6";
pub const ANALYTICS_USER_BREAKDOWN: &str = "SELECT value, \
     (sum(clicks) - CASE WHEN $5 THEN sum(bot_clicks) ELSE 0 END)::int8 AS n \
     FROM click_user_daily WHERE user_id = $1 AND day >= $3 AND day <= $4 AND dim = $2 \
     GROUP BY value HAVING (sum(clicks) - CASE WHEN $5 THEN sum(bot_clicks) ELSE 0 END) > 0 \
     ORDER BY n DESC, value LIMIT $6";
/// $1 user_id, $2 first day, $3 last day, $4 exclude bots, $5 limit → (url_id, code, clicks).
pub const ANALYTICS_TOP_URLS: &str = "SELECT l.url_id, u.short_code, l.n FROM ( \
     SELECT url_id, (sum(clicks) - CASE WHEN $4 THEN sum(bot_clicks) ELSE 0 END)::int8 AS n \
     FROM click_user_daily_links WHERE user_id = $1 AND day >= $2 AND day <= $3 \
     GROUP BY url_id) l LEFT JOIN urls u ON u.id = l.url_id WHERE l.n > 0 \
     ORDER BY l.n DESC, l.url_id LIMIT $5";
/// $1 start, $2 end → clicks, bot clicks, unknown-code hits, inactive-code hits.
pub const ANALYTICS_SUMMARY: &str = "SELECT coalesce(sum(clicks), 0)::int8, \
     coalesce(sum(bot_clicks), 0)::int8, coalesce(sum(unknown_hits), 0)::int8, \
     coalesce(sum(inactive_hits), 0)::int8 FROM click_global_hourly WHERE hour >= $1 AND hour < $2";

/// Every statement, prepared on each new pooled connection.
pub fn all() -> impl Iterator<Item = &'static str> {
    [
        USER_INSERT,
        USER_GET,
        USER_GET_FOR_UPDATE,
        USER_LIST,
        USER_UPDATE,
        USER_DELETE,
        URLS_DELETE_BY_USER,
        USER_EXISTS,
        USERS_LOCK,
        USERS_BULK_UPSERT,
        USERS_SEQUENCE_SYNC,
        URL_INSERT,
        URL_GET,
        URL_GET_FOR_UPDATE,
        URL_UPDATE,
        URL_DELETE,
        URL_LINK_BY_CODE,
        URL_EXISTS,
        URL_LIST,
        URL_LIST_BY_USER,
        URL_LIST_BY_ACTIVE,
        URL_LIST_BY_USER_ACTIVE,
        EVENT_INSERT,
        PING,
        SET_LOCAL_STATEMENT_TIMEOUT,
        CLICK_BATCH_CLAIM,
        CLICK_LINK_HOURLY_UPSERT,
        CLICK_USER_HOURLY_UPSERT,
        CLICK_GLOBAL_HOURLY_UPSERT,
        CLICK_LINK_DAILY_UPSERT,
        CLICK_USER_DAILY_UPSERT,
        CLICK_USER_DAILY_LINKS_UPSERT,
        ANALYTICS_LINK_TOTALS,
        ANALYTICS_LINK_FIRST_HOUR,
        ANALYTICS_USER_FIRST_HOUR,
        ANALYTICS_LINK_SERIES,
        ANALYTICS_USER_SERIES,
        ANALYTICS_LINK_BREAKDOWN,
        ANALYTICS_USER_BREAKDOWN,
        ANALYTICS_TOP_URLS,
        ANALYTICS_SUMMARY,
    ]
    .into_iter()
    .chain(
        [EventSource::All, EventSource::Redirects, EventSource::Typed]
            .into_iter()
            .flat_map(|s| (0..4).map(move |w| event_list(s, w))),
    )
}

// === seed (the `seed` subcommand only; not prepared on pooled connections) ===

/// Largest ids, so generated rows continue after what is there.
pub const SEED_MAX_IDS: &str =
    "SELECT (SELECT coalesce(max(id), 0) FROM users), (SELECT coalesce(max(id), 0) FROM urls)";
pub const SEED_COPY_USERS: &str = "COPY users (id, username, email, created_at) FROM STDIN";
pub const SEED_COPY_URLS: &str =
    "COPY urls (id, user_id, short_code, original_url, title, is_active, created_at, updated_at) FROM STDIN";
pub const SEED_COPY_EVENTS: &str =
    "COPY events (url_id, user_id, event_type, \"timestamp\", details) FROM STDIN";
/// Upserts of the old service's CSV rows, by id.
pub const SEED_USERS_UPSERT: &str = "INSERT INTO users (id, username, email, created_at)
    SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::timestamp[])
    ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username, email = EXCLUDED.email, created_at = EXCLUDED.created_at";
pub const SEED_URLS_UPSERT: &str = "INSERT INTO urls (id, user_id, short_code, original_url, title, is_active, created_at, updated_at)
    SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::timestamp[], $8::timestamp[])
    ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, short_code = EXCLUDED.short_code,
        original_url = EXCLUDED.original_url, title = EXCLUDED.title, is_active = EXCLUDED.is_active,
        created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at";
pub const SEED_EVENTS_UPSERT: &str = "INSERT INTO events (id, url_id, user_id, event_type, \"timestamp\", details)
    SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::timestamp[], $6::jsonb[])
    ON CONFLICT (id) DO NOTHING";
/// Moves every id sequence past its table's largest id (never backwards).
pub const SEED_SEQUENCES_SYNC: &str = "
    SELECT setval('users_id_seq', GREATEST((SELECT coalesce(max(id), 1) FROM users), (SELECT last_value FROM users_id_seq))),
           setval('urls_id_seq', GREATEST((SELECT coalesce(max(id), 1) FROM urls), (SELECT last_value FROM urls_id_seq))),
           setval('events_id_seq', GREATEST((SELECT coalesce(max(id), 1) FROM events), (SELECT last_value FROM events_id_seq)))";

/// The seed statements, for the test that prepares everything.
pub fn seed() -> impl Iterator<Item = &'static str> {
    [
        SEED_MAX_IDS,
        SEED_USERS_UPSERT,
        SEED_URLS_UPSERT,
        SEED_EVENTS_UPSERT,
        SEED_SEQUENCES_SYNC,
    ]
    .into_iter()
}
