-- The admin console: who changed what (audit log, written in the transaction of the
-- change), security events, and the per-account aggregates its lists sort by.

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    -- 'admin' (an admin's change) or 'security' (failed login, lockout, link-code
    -- merge, a suspended account's attempt).
    kind TEXT NOT NULL,
    -- The admin account that acted; NULL for the CLI operator or the system.
    actor_id TEXT,
    actor_name TEXT NOT NULL,
    action TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT,
    -- JSON documents of the object before and after the change.
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX audit_log_time ON audit_log (created_at);
CREATE INDEX audit_log_kind_time ON audit_log (kind, created_at);
CREATE INDEX audit_log_object ON audit_log (object_id, created_at);

-- Sorting accounts by spend or last activity reads these, kept up to date by the
-- transactions that charge a run and admit one, instead of scanning the ledger.
ALTER TABLE accounts ADD COLUMN spent BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN last_active_at BIGINT;
UPDATE accounts SET spent = COALESCE(
    (SELECT -SUM(l.amount) FROM ledger l WHERE l.account_id = accounts.id AND l.reason = 'run_usage'), 0);
UPDATE accounts SET last_active_at = (SELECT MAX(r.created_at) FROM runs r WHERE r.account_id = accounts.id);
CREATE INDEX accounts_spent ON accounts (spent);
CREATE INDEX accounts_last_active ON accounts (last_active_at DESC NULLS LAST);

-- An account's ledger includes its merged tombstones' rows.
CREATE INDEX accounts_merged_into ON accounts (merged_into);
-- Finding an account by any of its identities (external id or label).
CREATE INDEX identities_external ON identities (external_id);
CREATE INDEX identities_label ON identities (label);
-- Name prefixes are searched in code point order, whatever the database's locale.
CREATE INDEX accounts_name_c ON accounts (name COLLATE "C");
-- The runs list (newest first, by account) and spend per period.
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_account_created ON runs (account_id, created_at);
-- Covering: spend per period is summed from the index alone.
CREATE INDEX ledger_reason_time ON ledger (reason, created_at, amount);
