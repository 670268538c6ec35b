-- Single sign-on: identities get an opaque id (for listing and unlinking from the
-- web) and a human label; sso_flows holds each pending login's state, nonce and PKCE
-- verifier until its callback consumes it.

ALTER TABLE identities ADD COLUMN id TEXT;
ALTER TABLE identities ADD COLUMN label TEXT;
UPDATE identities SET id = lower(hex(randomblob(16))) WHERE id IS NULL;
CREATE UNIQUE INDEX identities_id ON identities(id);
-- Every identity gets an id, whoever inserts it.
CREATE TRIGGER identities_fill_id AFTER INSERT ON identities
FOR EACH ROW WHEN NEW.id IS NULL
BEGIN
    UPDATE identities SET id = lower(hex(randomblob(16)))
    WHERE platform = NEW.platform AND external_id = NEW.external_id;
END;

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
