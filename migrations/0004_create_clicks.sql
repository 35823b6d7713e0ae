-- Clicks (redirects) leave `events`: rollups always, raw rows optionally.
-- The service creates and drops the day partitions of `clicks` itself
-- (clicks::maintenance), and moves old `redirect` rows out of `events` in
-- batches while it serves (clicks::backfill).

-- Raw clicks of the retention window (CLICKS_RETENTION_DAYS), one partition a
-- day. Ids come from the events sequence, so GET /events can interleave both
-- kinds in id order as it always has.
CREATE TABLE clicks (
    id          BIGINT    NOT NULL DEFAULT nextval('events_id_seq'),
    clicked_at  TIMESTAMP NOT NULL,
    url_id      BIGINT    NOT NULL,
    user_id     BIGINT    NOT NULL,
    short_code  TEXT      NOT NULL,
    referrer    TEXT,
    user_agent  TEXT,
    is_bot      BOOLEAN   NOT NULL
) PARTITION BY RANGE (clicked_at);
-- The read paths: the unfiltered event list in id order (an append-only,
-- rightmost-leaf index: the cheapest kind), and its url_id filter. A user_id
-- filter goes through the user's links (urls_user_id_idx): a third index cost
-- every click about as much as the rest of its row (PERF.md "Clicks").
CREATE INDEX clicks_id_idx ON clicks (id);
CREATE INDEX clicks_url_id_idx ON clicks (url_id, id);

-- Per link per hour: the time series and the link's totals.
CREATE TABLE click_link_hourly (
    url_id      BIGINT      NOT NULL,
    hour        TIMESTAMPTZ NOT NULL,
    user_id     BIGINT      NOT NULL,
    clicks      BIGINT      NOT NULL,
    bot_clicks  BIGINT      NOT NULL,
    last_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (url_id, hour)
) WITH (fillfactor = 90);

-- Per user per hour: a user's time series without summing all their links.
CREATE TABLE click_user_hourly (
    user_id     BIGINT      NOT NULL,
    hour        TIMESTAMPTZ NOT NULL,
    clicks      BIGINT      NOT NULL,
    bot_clicks  BIGINT      NOT NULL,
    PRIMARY KEY (user_id, hour)
) WITH (fillfactor = 90);

-- Service-wide per hour, with the hits on unknown and inactive codes (Shlink's
-- "orphan visits"), which belong to no link.
CREATE TABLE click_global_hourly (
    hour            TIMESTAMPTZ PRIMARY KEY,
    clicks          BIGINT NOT NULL,
    bot_clicks      BIGINT NOT NULL,
    unknown_hits    BIGINT NOT NULL,
    inactive_hits   BIGINT NOT NULL
) WITH (fillfactor = 90);

-- Per link per UTC day per dimension value: dim is referrer (host), browser
-- (family), os (family) or device (desktop, mobile, tablet, bot, other).
CREATE TABLE click_link_daily (
    url_id      BIGINT NOT NULL,
    day         DATE   NOT NULL,
    dim         TEXT   NOT NULL,
    value       TEXT   NOT NULL,
    clicks      BIGINT NOT NULL,
    bot_clicks  BIGINT NOT NULL,
    PRIMARY KEY (url_id, day, dim, value)
) WITH (fillfactor = 90);

-- The same per user, and per user per day per link (a user's top links).
CREATE TABLE click_user_daily (
    user_id     BIGINT NOT NULL,
    day         DATE   NOT NULL,
    dim         TEXT   NOT NULL,
    value       TEXT   NOT NULL,
    clicks      BIGINT NOT NULL,
    bot_clicks  BIGINT NOT NULL,
    PRIMARY KEY (user_id, day, dim, value)
) WITH (fillfactor = 90);

CREATE TABLE click_user_daily_links (
    user_id     BIGINT NOT NULL,
    day         DATE   NOT NULL,
    url_id      BIGINT NOT NULL,
    clicks      BIGINT NOT NULL,
    bot_clicks  BIGINT NOT NULL,
    PRIMARY KEY (user_id, day, url_id)
) WITH (fillfactor = 90);

-- Every applied flush, by its id: a flush retried after an ambiguous failure
-- finds its id here and is not applied twice. Pruned after a day.
CREATE TABLE click_batches (
    batch_id    BIGINT      PRIMARY KEY,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
