CREATE TABLE account_emails (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    to_address text NOT NULL,
    subject text NOT NULL,
    body text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'unknown')),
    attempt_count integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner uuid,
    lease_expires_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);

CREATE INDEX account_emails_claimable_idx ON account_emails (next_attempt_at) WHERE status = 'pending';

INSERT INTO account_emails (user_id, to_address, subject, body, attempt_count, next_attempt_at, last_error, created_at)
SELECT (payload->>'user_id')::uuid, payload->>'to', payload->>'subject', payload->>'body',
       attempts, run_at, last_error, created_at
FROM background_jobs WHERE kind = 'account_mail' AND status <> 'failed'
  AND (payload->>'user_id' IS NULL OR EXISTS (SELECT 1 FROM users WHERE id = (payload->>'user_id')::uuid));

DROP TABLE background_jobs;
