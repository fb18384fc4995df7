-- Deliverability: what mail servers and recipients said after a send (bounces and
-- complaints), and the addresses an owner no longer mails (suppressions).

-- One row per delivery and kind: the same report twice (a mailbox polled again, a webhook
-- retried) counts once.
CREATE TABLE bounces (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    delivery_id uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint')),
    -- The status code and text the report or the server gave, cut to 1 KiB.
    diagnostic text,
    -- smtp: the reply to our own exchange; mailbox: a report read over IMAP; webhook: a provider's notice.
    source text NOT NULL CHECK (source IN ('smtp', 'mailbox', 'webhook')),
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bounces_delivery_kind_key UNIQUE (delivery_id, kind)
);

-- Per owner: addresses left out of every run, like unsubscribed clients, until the owner
-- lifts them. Matched without regard to case, as client addresses are.
CREATE TABLE suppressions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email text NOT NULL,
    reason text NOT NULL CHECK (reason IN ('hard_bounce', 'soft_bounces', 'complaint', 'manual')),
    -- The delivery whose bounce or complaint caused it (none for MANUAL).
    delivery_id uuid REFERENCES deliveries (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- One per address and owner; also what a run's expansion anti-joins on.
CREATE UNIQUE INDEX suppressions_owner_email_key ON suppressions (owner_id, lower(email));
-- The list, newest first.
CREATE INDEX suppressions_owner_created_idx ON suppressions (owner_id, created_at DESC, id DESC);

-- Clients of the run's audience left out because their address is suppressed.
ALTER TABLE runs ADD COLUMN suppressed integer NOT NULL DEFAULT 0;

-- A report that came after the send (a DSN in the bounce mailbox, a webhook) is logged as
-- an attempt of its own: BOUNCED or COMPLAINED. Such rows take attempt numbers below zero
-- (-1 hard, -2 soft, -3 complaint), so they never collide with a send's number and the
-- same report twice is one row.
ALTER TABLE attempts DROP CONSTRAINT attempts_status_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_status_check
    CHECK (status IN ('success', 'temporary_failure', 'permanent_failure', 'unknown', 'bounced', 'complained'));
