-- A run's deliveries are written in chunks of its audience in client id order, each chunk
-- its own short transaction, so a run of a million starts sending after its first chunk
-- instead of after the last row. `expanded_through` is the last client id written, NULL
-- once the whole audience is; a run is not closed while it is set.
ALTER TABLE runs ADD COLUMN expanded_through uuid;
CREATE INDEX runs_expanding_idx ON runs (run_at) WHERE expanded_through IS NOT NULL;

-- The chunks walk an owner's subscribed clients by id; the same index still counts "all
-- my clients" from the index alone.
DROP INDEX clients_owner_subscribed;
CREATE INDEX clients_owner_subscribed ON clients (owner_id, id)
    WHERE deleted_at IS NULL AND unsubscribed_at IS NULL;
