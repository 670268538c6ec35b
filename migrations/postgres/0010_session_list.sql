-- Web sessions a person can list and end one by one: a public id (the token's hash
-- is never shown), when the session was last used (to the minute) and the browser
-- that used it (its User-Agent, cut to 300 characters).
ALTER TABLE sessions ADD COLUMN id TEXT;
ALTER TABLE sessions ADD COLUMN last_seen_at BIGINT;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
UPDATE sessions SET id = md5(random()::text || token_hash) WHERE id IS NULL;
ALTER TABLE sessions ALTER COLUMN id SET NOT NULL;
CREATE UNIQUE INDEX sessions_id ON sessions(id);
