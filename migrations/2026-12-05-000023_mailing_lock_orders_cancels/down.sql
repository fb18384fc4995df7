DROP FUNCTION dispatch_advance(uuid[], text[], bigint[], int[], text[], text[], uuid, uuid[], uuid[], bigint[], uuid[]);
-- The ten-argument dispatch_advance of 000021.
CREATE FUNCTION dispatch_advance(uuid[], text[], bigint[], int[], text[], text[], uuid, uuid[], uuid[], bigint[],
                                 OUT started uuid[], OUT logged_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    mine bigint[];
BEGIN
    SELECT coalesce(array_agg(id), '{}') INTO mine
    FROM (SELECT s.id FROM run_slices s WHERE s.id = ANY($10) AND s.lease_owner = $7 FOR SHARE) held;
    WITH outcome AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::int[], $5::text[], $6::text[], $9::uuid[])
            AS o(id, delivery_status, delay_us, attempt, attempt_status, response, server_id)
    ),
    -- Fenced by lease and attempt number: a send whose lease was lost records nothing.
    -- The guards sit in sub-selects so the plan reads deliveries by primary key (see 000008).
    updated AS (
        UPDATE deliveries d
        SET status = o.delivery_status,
            next_attempt_at = now() + o.delay_us * interval '1 microsecond',
            sent_at = CASE WHEN o.delivery_status = 'sent' THEN now() ELSE d.sent_at END,
            sending_since = NULL, lease_owner = NULL, lease_expires_at = NULL, slice_id = NULL, updated_at = now()
        FROM outcome o
        WHERE d.id = o.id
          AND (SELECT (d.lease_owner = $7 OR d.slice_id = ANY(mine))
                  AND d.attempt_count = o.attempt AND d.sending_since IS NOT NULL)
        RETURNING d.id, d.mailing_id, d.owner_id, d.email, o.attempt, o.attempt_status, o.response, o.server_id
    ),
    logged AS (
        INSERT INTO attempts (delivery_id, mailing_id, owner_id, email, attempt_number, status, server_response,
                              smtp_server_id)
        SELECT id, mailing_id, owner_id, email, attempt, attempt_status, response, server_id FROM updated
    ),
    -- Marked again when already marked: when a call committed but its answer was lost (the
    -- connection dropped), the dispatcher calls again with the same arguments; the outcomes
    -- are then fenced out above, and the group it marked is still its own to send.
    marked AS (
        UPDATE deliveries d
        SET sending_since = coalesce(d.sending_since, now()),
            attempt_count = CASE WHEN d.slice_id IS NOT NULL AND d.sending_since IS NULL
                                 THEN d.attempt_count + 1 ELSE d.attempt_count END,
            updated_at = now()
        WHERE d.id = ANY($8)
          AND (SELECT (d.lease_owner = $7 OR d.slice_id = ANY(mine)) AND d.status = 'pending'
                  AND NOT m.paused AND m.deleted_at IS NULL
               FROM mailings m WHERE m.id = d.mailing_id)
        RETURNING d.id
    )
    SELECT (SELECT array_agg(id) FROM marked), now() INTO started, logged_at;
END
$$;
