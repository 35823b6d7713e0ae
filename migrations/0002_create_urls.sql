-- Short URLs. A user's URLs go with the user (cascade); short codes are unique by constraint.
CREATE TABLE urls (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    short_code    TEXT      NOT NULL,
    original_url  TEXT      NOT NULL,
    title         TEXT      NOT NULL DEFAULT '',
    is_active     BOOLEAN   NOT NULL DEFAULT TRUE,
    created_at    TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at    TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT urls_short_code_key UNIQUE (short_code)
);
CREATE INDEX urls_user_id_idx ON urls (user_id, id);
CREATE INDEX urls_is_active_idx ON urls (is_active, id);
