-- What POST /urls does in PostgreSQL (URL_INSERT then EVENT_INSERT in one transaction),
-- with a random 10-character code standing in for the server's generated one.
\set uid random(1, :users)
BEGIN;
INSERT INTO urls (user_id, short_code, original_url, title) VALUES (:uid, substr(md5(random()::text), 1, 10), 'https://example.com/pgbench/' || :client_id::text, '') ON CONFLICT (short_code) DO NOTHING RETURNING id AS url_id, short_code AS code, original_url AS target, user_id, title, is_active, created_at, updated_at \gset
INSERT INTO events (url_id, user_id, event_type, details) VALUES (:url_id, :uid, 'created', jsonb_build_object('short_code', :code::text, 'original_url', :target::text)) RETURNING id, url_id, user_id, event_type, "timestamp", details;
END;
