-- The append-only event log. No foreign keys: deleting a URL or a user keeps its history.
CREATE TABLE events (
    id          BIGSERIAL PRIMARY KEY,
    url_id      BIGINT,
    user_id     BIGINT,
    event_type  TEXT      NOT NULL,
    "timestamp" TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    details     JSONB     NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX events_url_id_idx ON events (url_id, id);
CREATE INDEX events_user_id_idx ON events (user_id, id);
CREATE INDEX events_event_type_idx ON events (event_type, id);
