DROP INDEX clients_owner_subscribed;
CREATE INDEX clients_owner_subscribed ON clients (owner_id)
    WHERE deleted_at IS NULL AND unsubscribed_at IS NULL;
DROP INDEX runs_expanding_idx;
ALTER TABLE runs DROP COLUMN expanded_through;
