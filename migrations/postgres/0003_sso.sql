-- Single sign-on: identities get an opaque id (for listing and unlinking from the
-- web) and a human label; sso_flows holds each pending login's state, nonce and PKCE
-- verifier until its callback consumes it.

-- The volatile default fills existing rows (each its own value) and every later insert.
ALTER TABLE identities ADD COLUMN id TEXT NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text);
ALTER TABLE identities ADD COLUMN label TEXT;
CREATE UNIQUE INDEX identities_id ON identities(id);

CREATE TABLE sso_flows (
    state_hash TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    link_account_id TEXT REFERENCES accounts(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sso_flows_expires ON sso_flows(expires_at);
