-- Chorus schema, SQLite flavour. Timestamps are Unix milliseconds (BIGINT) so the
-- same queries run on SQLite and PostgreSQL.

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    password_hash TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE identities (
    platform TEXT NOT NULL,
    external_id TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (platform, external_id)
);
CREATE INDEX identities_account ON identities(account_id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_account ON api_keys(account_id);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_account ON sessions(account_id);

CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    title TEXT NOT NULL,
    model TEXT NOT NULL,
    system_prompt TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conversations_account ON conversations(account_id, updated_at);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    parent_id TEXT REFERENCES messages(id),
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    model TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX messages_conversation ON messages(conversation_id, created_at);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    message_id TEXT NOT NULL REFERENCES messages(id),
    continues_run_id TEXT REFERENCES runs(id),
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    text TEXT NOT NULL,
    -- Byte length of the message text before this run (what a continuation extends).
    prefix_len BIGINT NOT NULL,
    checkpoint_seq BIGINT NOT NULL,
    finish_reason TEXT,
    error TEXT,
    stop_requested BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    cached_prompt_tokens BIGINT,
    reasoning_tokens BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX runs_active ON runs(status, lease_expires_at);
CREATE INDEX runs_message ON runs(message_id);

CREATE TABLE bindings (
    surface TEXT NOT NULL,
    channel_key TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    last_rendered_seq BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (surface, channel_key)
);
CREATE INDEX bindings_conversation ON bindings(conversation_id);
