-- Progressive rendering of replies on chat surfaces (Matrix, later Discord/Slack).
-- One row per binding: the assistant message it shows, the run last rendered, the
-- surface's message ids of its parts (JSON list, in order), the last journal seq put
-- on screen and whether the final text is there. A restarted bot finishes what a row
-- left unfinished, in the same messages.
CREATE TABLE renders (
    surface TEXT NOT NULL,
    channel_key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    parts TEXT NOT NULL,
    rendered_seq BIGINT NOT NULL,
    finished BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (surface, channel_key)
);
CREATE INDEX renders_unfinished ON renders(surface, finished);
-- Which binding a message posted by the renderer belongs to (reactions on it).
CREATE TABLE render_messages (
    surface TEXT NOT NULL,
    platform_message_id TEXT NOT NULL,
    channel_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (surface, platform_message_id)
);
