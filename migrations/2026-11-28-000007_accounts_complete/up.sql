-- Issue 5: the daily send quota, daily statistics and the managers' list of users.

-- Deliveries each user's runs started per UTC day, counted when a run starts, so the
-- quota check (DAILY_SEND_QUOTA) reads one row instead of counting deliveries.
CREATE TABLE daily_sends (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day date NOT NULL,
    deliveries integer NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
);

-- dailyStats: deliveries that reached SENT per day, for one owner's mailings.
CREATE INDEX deliveries_owner_sent_idx ON deliveries (owner_id, sent_at) WHERE sent_at IS NOT NULL;

-- `users` for managers and admins, newest first, keyset-paginated.
CREATE INDEX users_created_idx ON users (created_at DESC, id DESC) WHERE deleted_at IS NULL;

-- homeStats: live mailings counted without visiting deleted ones.
CREATE INDEX mailings_live_idx ON mailings (completed_at, paused) WHERE deleted_at IS NULL;
