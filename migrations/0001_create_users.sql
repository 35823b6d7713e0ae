-- Users. Emails are unique compared case-insensitively; usernames need not be unique.
CREATE TABLE users (
    id          BIGSERIAL PRIMARY KEY,
    username    TEXT      NOT NULL,
    email       TEXT      NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
