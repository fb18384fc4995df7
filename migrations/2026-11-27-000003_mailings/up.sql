-- Mailings: a message to a set of clients on a schedule.

CREATE TABLE mailings (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id uuid NOT NULL REFERENCES users (id),
    message_id uuid NOT NULL REFERENCES messages (id),
    starts_at timestamptz NOT NULL,
    -- NULL: no end. Inclusive: a run falling exactly at ends_at still starts.
    ends_at timestamptz,
    periodicity text NOT NULL CHECK (periodicity IN ('once', 'daily', 'weekly', 'monthly')),
    -- IANA zone in which days, weeks, month ends and DST are counted.
    time_zone text NOT NULL DEFAULT 'UTC',
    paused boolean NOT NULL DEFAULT false,
    -- The next run not yet started (maintained by the schedule code); NULL when none remains.
    next_run_at timestamptz,
    -- Set when completed by hand or when the last run finished.
    completed_at timestamptz,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mailings_window_check CHECK (ends_at IS NULL OR ends_at > starts_at)
);

CREATE INDEX mailings_owner_created_idx ON mailings (owner_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
-- The dispatcher's "which runs are due" look-up: only mailings that can still start a run.
CREATE INDEX mailings_due_idx ON mailings (next_run_at)
    WHERE next_run_at IS NOT NULL AND deleted_at IS NULL AND completed_at IS NULL;
-- deleteMessage refuses while a live mailing uses the message.
CREATE INDEX mailings_message_idx ON mailings (message_id) WHERE deleted_at IS NULL;

CREATE TABLE mailing_clients (
    mailing_id uuid NOT NULL REFERENCES mailings (id) ON DELETE CASCADE,
    client_id uuid NOT NULL REFERENCES clients (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailing_id, client_id)
);

-- Cancelling a removed/deleted/unsubscribed client's pending deliveries starts from the client.
CREATE INDEX mailing_clients_client_idx ON mailing_clients (client_id);
