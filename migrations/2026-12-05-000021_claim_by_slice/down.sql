DROP FUNCTION dispatch_advance(uuid[], text[], bigint[], int[], text[], text[], uuid, uuid[], uuid[], bigint[]);
-- The nine-argument dispatch_advance of 000019, which reads only the deliveries' own leases.
CREATE FUNCTION dispatch_advance(uuid[], text[], bigint[], int[], text[], text[], uuid, uuid[], uuid[],
                                 OUT started uuid[], OUT logged_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    WITH outcome AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::int[], $5::text[], $6::text[], $9::uuid[])
            AS o(id, delivery_status, delay_us, attempt, attempt_status, response, server_id)
    ),
    updated AS (
        UPDATE deliveries d
        SET status = o.delivery_status,
            next_attempt_at = now() + o.delay_us * interval '1 microsecond',
            sent_at = CASE WHEN o.delivery_status = 'sent' THEN now() ELSE d.sent_at END,
            sending_since = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
        FROM outcome o
        WHERE d.id = o.id
          AND (SELECT d.lease_owner = $7 AND d.attempt_count = o.attempt AND d.sending_since IS NOT NULL)
        RETURNING d.id, d.mailing_id, d.owner_id, d.email, o.attempt, o.attempt_status, o.response, o.server_id
    ),
    logged AS (
        INSERT INTO attempts (delivery_id, mailing_id, owner_id, email, attempt_number, status, server_response,
                              smtp_server_id)
        SELECT id, mailing_id, owner_id, email, attempt, attempt_status, response, server_id FROM updated
    ),
    marked AS (
        UPDATE deliveries d SET sending_since = coalesce(d.sending_since, now()), updated_at = now()
        WHERE d.id = ANY($8)
          AND (SELECT d.lease_owner = $7 AND d.status = 'pending'
                  AND NOT m.paused AND m.deleted_at IS NULL
               FROM mailings m WHERE m.id = d.mailing_id)
        RETURNING d.id
    )
    SELECT (SELECT array_agg(id) FROM marked), now() INTO started, logged_at;
END
$$;
-- Deliveries still in a slice go back to being claimed on their own.
DROP INDEX deliveries_claimable_idx;
ALTER TABLE deliveries DROP COLUMN slice_id;
CREATE INDEX deliveries_claimable_idx ON deliveries (next_attempt_at)
    WHERE status = 'pending' AND lease_owner IS NULL;
DROP TABLE run_slices;
