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
/// $1 url_ids, $2 user_ids, $3 event_types, $4 timestamps, $5 details: one batch, one statement.
pub const EVENTS_INSERT_BATCH: &str =
    "INSERT INTO events (url_id, user_id, event_type, \"timestamp\", details)
    SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::timestamp[], $5::jsonb[])";
/// Event lists, one per combination of the url_id / user_id / event_type filters, in that
/// bit order (bit 0 url_id, bit 1 user_id, bit 2 event_type). Filter parameters come
/// first in that order, then limit and offset.
pub const EVENT_LISTS: [&str; 8] = [
    concat!("SELECT ", event_cols!(), " FROM events ORDER BY id LIMIT $1 OFFSET $2"),
    concat!("SELECT ", event_cols!(), " FROM events WHERE url_id = $1 ORDER BY id LIMIT $2 OFFSET $3"),
    concat!("SELECT ", event_cols!(), " FROM events WHERE user_id = $1 ORDER BY id LIMIT $2 OFFSET $3"),
    concat!(
        "SELECT ",
        event_cols!(),
        " FROM events WHERE url_id = $1 AND user_id = $2 ORDER BY id LIMIT $3 OFFSET $4"
    ),
    concat!("SELECT ", event_cols!(), " FROM events WHERE event_type = $1 ORDER BY id LIMIT $2 OFFSET $3"),
    concat!(
        "SELECT ",
        event_cols!(),
        " FROM events WHERE url_id = $1 AND event_type = $2 ORDER BY id LIMIT $3 OFFSET $4"
    ),
    concat!(
        "SELECT ",
        event_cols!(),
        " FROM events WHERE user_id = $1 AND event_type = $2 ORDER BY id LIMIT $3 OFFSET $4"
    ),
    concat!(
        "SELECT ",
        event_cols!(),
        " FROM events WHERE url_id = $1 AND user_id = $2 AND event_type = $3 ORDER BY id LIMIT $4 OFFSET $5"
    ),
];

/// Liveness of the database for `/ready`.
pub const PING: &str = "SELECT 1";

/// $1 the timeout as text (`120000ms`): raises statement_timeout until the end of the
/// current transaction (`set_config(..., true)` is `SET LOCAL`, with a parameter).
pub const SET_LOCAL_STATEMENT_TIMEOUT: &str = "SELECT set_config('statement_timeout', $1, true)";

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
        EVENTS_INSERT_BATCH,
        PING,
        SET_LOCAL_STATEMENT_TIMEOUT,
    ]
    .into_iter()
    .chain(EVENT_LISTS)
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
