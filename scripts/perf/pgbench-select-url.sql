-- What GET /urls/{id} asks PostgreSQL on a cache miss (URL_GET), ids over the seeded range.
\set id random(1, :max_id)
SELECT id, user_id, short_code, original_url, title, is_active, created_at, updated_at FROM urls WHERE id = :id;
