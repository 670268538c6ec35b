-- A conversation's runs are read with every message sent to it (its context) and by
-- stop and continue; without an index each of those read every run ever made.
CREATE INDEX runs_conversation ON runs (conversation_id, created_at);
-- An admission with a limit counts the account's active runs and what they hold;
-- only those runs are indexed, so the count does not grow with the account's history.
CREATE INDEX runs_account_active ON runs (account_id) WHERE status IN ('queued', 'streaming');
