-- Recording a group of sends and marking the next group SENDING (queue::advance), as a
-- function for one reason: as a prepared statement PostgreSQL planned it afresh on every
-- call (its custom plans looked cheaper than the generic one), a quarter of a millisecond
-- per group of SMTP_CONCURRENCY sends. Here the plan is made once per connection.
--
-- The generic plan reads deliveries by primary key whatever the statistics say: the guards
-- sit in sub-selects that no index can answer. (Written as plain conditions, a freshly
-- expanded run with stale statistics got a scan of every pending delivery of the mailing
-- or of a partial index, milliseconds per group.)
--
-- $1..$6: the finished sends (delivery id, new delivery status, retry delay in
-- microseconds, attempt number, attempt status, server response); $7: the lease owner;
-- $8: the NOTIFY channel; $9: the deliveries to mark SENDING next. Returns those of $9
-- that may be sent: still ours, not begun, their mailing neither paused nor deleted.
CREATE FUNCTION dispatch_advance(uuid[], text[], bigint[], int[], text[], text[], uuid, text, uuid[])
RETURNS uuid[]
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    next_started uuid[];
    notified bigint;
BEGIN
    WITH outcome AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::int[], $5::text[], $6::text[])
            AS o(id, delivery_status, delay_us, attempt, attempt_status, response)
    ),
    -- Fenced by lease owner and attempt number: a send whose lease was lost records nothing.
    updated AS (
        UPDATE deliveries d
        SET status = o.delivery_status,
            next_attempt_at = now() + o.delay_us * interval '1 microsecond',
            sent_at = CASE WHEN o.delivery_status = 'sent' THEN now() ELSE d.sent_at END,
            lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
        FROM outcome o
        WHERE d.id = o.id AND (SELECT d.lease_owner = $7 AND d.attempt_count = o.attempt AND d.status = 'sending')
        RETURNING d.id, d.mailing_id, d.owner_id, d.email, d.run_id, o.attempt, o.attempt_status, o.response
    ),
    logged AS (
        INSERT INTO attempts (delivery_id, mailing_id, owner_id, email, attempt_number, status, server_response)
        SELECT id, mailing_id, owner_id, email, attempt, attempt_status, response FROM updated
    ),
    -- One small notice per run touched, never a list of ids.
    notices AS (
        SELECT pg_notify($8, json_build_object('kind', 'run', 'mailing', mailing_id, 'run', run_id,
                                               'logged_at', now())::text)
        FROM (SELECT DISTINCT mailing_id, run_id FROM updated) touched
    ),
    -- 'sending' too: when a call committed but its answer was lost (the connection
    -- dropped), the dispatcher calls again with the same arguments; the outcomes are
    -- then fenced out above, and the group it marked is still its own to send.
    started AS (
        UPDATE deliveries d SET status = 'sending', updated_at = now()
        WHERE d.id = ANY($9)
          AND (SELECT d.lease_owner = $7 AND d.status IN ('pending', 'sending')
                  AND NOT m.paused AND m.deleted_at IS NULL
               FROM mailings m WHERE m.id = d.mailing_id)
        RETURNING d.id
    )
    SELECT (SELECT array_agg(id) FROM started), (SELECT count(*) FROM notices) INTO next_started, notified;
    RETURN next_started;
END
$$;
