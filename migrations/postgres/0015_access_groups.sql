-- The admin console's groups of accounts: a named group gives its members models and
-- tool servers on top of their role's (an account may use the union of its role's
-- lists and its groups'). A group's lists are JSON arrays of names, as in
-- access_rules; an empty list gives nothing, `*` gives every one.
CREATE TABLE access_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    models_json TEXT NOT NULL,
    tool_servers_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- Who is in which group. Read by account on every access check of an account whose
-- role does not already allow everything (the index), and by group on its page (the
-- primary key).
CREATE TABLE access_group_members (
    group_id TEXT NOT NULL REFERENCES access_groups(id),
    account_id TEXT NOT NULL REFERENCES accounts(id),
    added_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, account_id)
);
CREATE INDEX access_group_members_account ON access_group_members(account_id);
