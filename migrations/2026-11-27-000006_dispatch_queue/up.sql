-- What the dispatcher needs beyond the first schema.

-- A claimed delivery keeps status 'pending' (with a lease) until its SMTP exchange is
-- about to begin; only unleased ones are claimable, so the claim's index holds just those.
DROP INDEX deliveries_claimable_idx;
CREATE INDEX deliveries_claimable_idx ON deliveries (next_attempt_at)
    WHERE status = 'pending' AND lease_owner IS NULL;

-- attempt_count only grows (it is the lease's fencing token); retryDeliveries gives a
-- fresh budget by remembering where it started.
ALTER TABLE deliveries ADD COLUMN attempts_before_retry integer NOT NULL DEFAULT 0;

-- Secrets every instance must share, made once by whichever starts first
-- (the key that signs unsubscribe links).
CREATE TABLE app_secrets (
    name text PRIMARY KEY,
    value bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);


-- Runs of a mailing, newest first (Mailing.runs).
CREATE INDEX runs_mailing_run_at_idx ON runs (mailing_id, run_at DESC, id DESC);
