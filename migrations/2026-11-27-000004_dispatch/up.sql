-- The sending side: runs (occurrences of a mailing's schedule), deliveries (the job queue:
-- one message to one client for one run) and attempts (the mailing log).

CREATE TABLE runs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    mailing_id uuid NOT NULL REFERENCES mailings (id),
    run_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'skipped', 'cancelled')),
    -- Snapshot of what this run sends, taken when it starts: later edits do not change it.
    subject text NOT NULL DEFAULT '',
    body text NOT NULL DEFAULT '',
    mail_from text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- Any instance may start a due run; this makes starting it twice impossible (no leader).
    CONSTRAINT runs_mailing_run_at_key UNIQUE (mailing_id, run_at)
);

-- Runs still sending, for the "is this run finished" sweep.
CREATE INDEX runs_running_idx ON runs (mailing_id) WHERE status = 'running';

CREATE TABLE deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id uuid NOT NULL REFERENCES runs (id),
    -- Denormalised from the run so per-mailing and per-owner reads need no join.
    mailing_id uuid NOT NULL REFERENCES mailings (id),
    owner_id uuid NOT NULL REFERENCES users (id),
    client_id uuid NOT NULL REFERENCES clients (id),
    -- Snapshot of the recipient at expansion time: history survives edits and deletes.
    email text NOT NULL,
    full_name text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'unknown', 'cancelled')),
    -- Attempts made so far; also the fencing token of the current lease.
    attempt_count integer NOT NULL DEFAULT 0,
    -- When the delivery may next be claimed (retry backoff).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Lease: which instance holds the delivery and until when.
    lease_owner uuid,
    lease_expires_at timestamptz,
    sent_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deliveries_run_client_key UNIQUE (run_id, client_id)
);

-- The claim: only claimable rows are in this index, so it stays small while the table
-- grows with millions of finished deliveries.
CREATE INDEX deliveries_claimable_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
-- The rescuer: leases that may have expired.
CREATE INDEX deliveries_leased_idx ON deliveries (lease_expires_at) WHERE lease_owner IS NOT NULL;
-- Per-run progress counts and per-mailing listings by status.
CREATE INDEX deliveries_run_status_idx ON deliveries (run_id, status);
CREATE INDEX deliveries_mailing_status_idx ON deliveries (mailing_id, status, created_at DESC, id DESC);
-- Cancelling one client's pending deliveries.
CREATE INDEX deliveries_client_pending_idx ON deliveries (client_id) WHERE status IN ('pending', 'sending');

CREATE TABLE attempts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    delivery_id uuid NOT NULL REFERENCES deliveries (id),
    mailing_id uuid NOT NULL REFERENCES mailings (id),
    owner_id uuid NOT NULL REFERENCES users (id),
    email text NOT NULL,
    -- 1-based; unique per delivery, so a fenced-out instance cannot log the same try twice.
    attempt_number integer NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL CHECK (status IN ('success', 'temporary_failure', 'permanent_failure', 'unknown')),
    -- The server's reply or the transport error, cut to 1 KiB, valid UTF-8.
    server_response text,
    CONSTRAINT attempts_delivery_number_key UNIQUE (delivery_id, attempt_number)
);

-- The mailing log, newest first, per mailing and per owner; daily statistics by time.
CREATE INDEX attempts_mailing_idx ON attempts (mailing_id, attempted_at DESC, id DESC);
CREATE INDEX attempts_owner_idx ON attempts (owner_id, attempted_at DESC, id DESC);

-- Account mails (verification, reset, notices) go through a durable queue of their own,
-- so a mail-server outage delays them instead of losing them.
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
