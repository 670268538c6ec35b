-- What a chat surface remembers about one of its channels besides its binding and
-- render, so that a restart loses none of it: on Slack, who asked last in a thread
-- (the recipient of its native stream, and where `/chorus stop` typed in its channel
-- acts), which threads are assistant threads and which of those have their title.
-- One row per (surface, channel, name); `value` is the mark's text.
CREATE TABLE surface_marks (
    surface TEXT NOT NULL,
    channel_key TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (surface, channel_key, name)
);
CREATE INDEX surface_marks_by_value ON surface_marks(surface, name, value, updated_at);
