-- Balances, the append-only ledger, API key scopes and link codes.
-- Amounts are integer micro-credits (1 credit = 1 000 000), so the balance equals the
-- sum of the ledger exactly.

ALTER TABLE accounts ADD COLUMN balance BIGINT NOT NULL DEFAULT 0;
-- When last auto-refilled (Unix ms).
ALTER TABLE accounts ADD COLUMN refilled_at BIGINT;
-- Set on a tombstone: the account this one was merged into.
ALTER TABLE accounts ADD COLUMN merged_into TEXT;

-- The prompt tokens estimated when the run started: what a run that ends without
-- reported usage (interrupted by the sweeper) is charged for its prompt.
ALTER TABLE runs ADD COLUMN prompt_estimate BIGINT;

-- Space-separated scopes: `read` (GET only) and `chat` (everything an account does).
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read chat';

CREATE TABLE ledger (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    amount BIGINT NOT NULL,
    -- run_usage, initial, grant, refill, merge
    reason TEXT NOT NULL,
    -- run_usage: at most one row per run, so a run is never charged twice.
    run_id TEXT UNIQUE,
    model TEXT,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    cached_prompt_tokens BIGINT,
    note TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX ledger_account ON ledger(account_id, created_at);

CREATE TABLE link_codes (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    code_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX link_codes_account ON link_codes(account_id);
