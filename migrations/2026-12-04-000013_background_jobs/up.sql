-- One queue for background work that is not a delivery (account mails, sweeps; later
-- bounce-mailbox polls and webhooks): a typed job per row (`kind`, its fields in
-- `payload`), claimed by any instance with FOR UPDATE SKIP LOCKED under a lease, retried
-- with backoff. A finished job's row is deleted; a given-up one stays as `failed`.
CREATE TABLE background_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    payload jsonb NOT NULL DEFAULT '{}',
    -- A recurring job: its kind's one row, rescheduled after each run.
    singleton boolean NOT NULL DEFAULT false,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'failed')),
    run_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    lease_owner uuid,
    lease_expires_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX background_jobs_singleton_key ON background_jobs (kind) WHERE singleton;
CREATE INDEX background_jobs_due_idx ON background_jobs (run_at) WHERE status = 'pending';
CREATE INDEX background_jobs_leased_idx ON background_jobs (lease_expires_at) WHERE status = 'running';

-- Account mails still to send move over (a mail caught mid-send is sent again: a second
-- copy of a verification mail is harmless, a lost one is not); sent ones were history.
INSERT INTO background_jobs (kind, payload, run_at, attempts, last_error, created_at)
SELECT 'account_mail',
       jsonb_build_object('user_id', user_id, 'to', to_address, 'subject', subject, 'body', body),
       next_attempt_at, attempt_count, last_error, created_at
FROM account_emails WHERE status IN ('pending', 'sending');

DROP TABLE account_emails;
