-- The admin console's overview and providers page, across instances, without
-- scanning runs or the ledger, and an account's own refill.

-- Replies ended per minute and per hour (a rollup written by the transaction that
-- ends a run, so it is exactly the runs that ended). `shard` (from the run id) spreads
-- the replies ending in one bucket over several rows, so concurrent run ends do not
-- queue on one row lock. Minute rows are kept two days, hour rows 400 days.
CREATE TABLE run_stats (
    -- Bucket width in ms: 60000 (a minute) or 3600000 (an hour).
    span BIGINT NOT NULL,
    -- Start of the bucket, Unix ms.
    bucket BIGINT NOT NULL,
    shard BIGINT NOT NULL,
    replies BIGINT NOT NULL,
    -- Of which ended with status `failed`.
    failed BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    -- Micro-credits charged.
    cost BIGINT NOT NULL,
    PRIMARY KEY (span, bucket, shard)
);

-- What runs ended before this rollup existed, in its hour and minute buckets.
INSERT INTO run_stats (span, bucket, shard, replies, failed, prompt_tokens, completion_tokens, cost)
SELECT s.span, (r.finished_at / s.span) * s.span, 0, COUNT(*),
       SUM(CASE WHEN r.status = 'failed' THEN 1 ELSE 0 END),
       COALESCE(SUM(r.prompt_tokens), 0), COALESCE(SUM(r.completion_tokens), 0),
       COALESCE(SUM(-l.amount), 0)
FROM runs r
CROSS JOIN (SELECT 60000 AS span UNION ALL SELECT 3600000) s
LEFT JOIN ledger l ON l.run_id = r.id
WHERE r.finished_at IS NOT NULL
GROUP BY s.span, (r.finished_at / s.span) * s.span;

-- Each instance's view of each provider (recent attempts, error rate, time to first
-- token, last error), written every few seconds by that instance, so every instance's
-- console shows them all. Rows of an instance gone quiet are left out when read.
CREATE TABLE provider_stats (
    instance_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    first_token_p50_ms BIGINT,
    first_token_p95_ms BIGINT,
    last_error TEXT,
    last_error_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (instance_id, provider)
);

-- An account's own auto-refill, set by an admin: micro-credits (0: never refilled)
-- and the smallest interval between two refills. NULL: the `[quota]` default.
ALTER TABLE accounts ADD COLUMN refill_amount BIGINT;
ALTER TABLE accounts ADD COLUMN refill_interval_secs BIGINT;
