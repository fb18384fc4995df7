DROP FUNCTION dispatch_advance(uuid[], text[], bigint[], int[], text[], text[], uuid, uuid[], uuid[]);
CREATE OR REPLACE FUNCTION dispatch_advance(uuid[], text[], bigint[], int[], text[], text[], uuid, uuid[],
                                            OUT started uuid[], OUT logged_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    WITH outcome AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::int[], $5::text[], $6::text[])
            AS o(id, delivery_status, delay_us, attempt, attempt_status, response)
    ),
    -- Fenced by lease owner and attempt number: a send whose lease was lost records nothing.
    -- The guards sit in sub-selects so the plan reads deliveries by primary key (see 000008).
    updated AS (
        UPDATE deliveries d
        SET status = o.delivery_status,
            next_attempt_at = now() + o.delay_us * interval '1 microsecond',
            sent_at = CASE WHEN o.delivery_status = 'sent' THEN now() ELSE d.sent_at END,
            sending_since = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
        FROM outcome o
        WHERE d.id = o.id
          AND (SELECT d.lease_owner = $7 AND d.attempt_count = o.attempt AND d.sending_since IS NOT NULL)
        RETURNING d.id, d.mailing_id, d.owner_id, d.email, o.attempt, o.attempt_status, o.response
    ),
    logged AS (
        INSERT INTO attempts (delivery_id, mailing_id, owner_id, email, attempt_number, status, server_response)
        SELECT id, mailing_id, owner_id, email, attempt, attempt_status, response FROM updated
    ),
    -- Marked again when already marked: when a call committed but its answer was lost (the
    -- connection dropped), the dispatcher calls again with the same arguments; the outcomes
    -- are then fenced out above, and the group it marked is still its own to send.
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
DROP FUNCTION lease_budget(text, bigint[], int[], int);
DROP TABLE send_budgets;
ALTER TABLE attempts DROP COLUMN smtp_server_id;
ALTER TABLE mailings DROP COLUMN sending_window, DROP COLUMN sender_identity_id;
DROP TABLE sender_identity_users;
DROP TABLE sender_identity_servers;
DROP TABLE sender_identities;
DROP TABLE smtp_servers;
