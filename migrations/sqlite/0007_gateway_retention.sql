-- Gateway requests kept as runs with a retention period ([gateway] keep = "runs"):
-- their conversation is hidden from conversation lists and deleted, with its runs,
-- once `expires_at` (Unix ms) has passed. NULL: an ordinary conversation, kept.
ALTER TABLE conversations ADD COLUMN expires_at BIGINT;
CREATE INDEX conversations_expires ON conversations (expires_at) WHERE expires_at IS NOT NULL;
