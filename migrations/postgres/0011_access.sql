-- The admin console's Access page: which models and tool servers a role may use,
-- overriding the config file's `[access]` section one (role, resource) at a time.
-- No row: the config decides. A row whose allow_json is NULL: every one is allowed.
-- Otherwise allow_json is a JSON array of names (models or aliases, `provider/*`;
-- MCP server names and `sandbox`).
CREATE TABLE access_rules (
    role TEXT NOT NULL,
    -- 'models' or 'tool_servers'.
    resource TEXT NOT NULL,
    allow_json TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (role, resource)
);
