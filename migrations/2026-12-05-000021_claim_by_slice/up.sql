-- Claim ranges: a run's deliveries are claimed a slice at a time instead of row by row.
--
-- A delivery's row was written three times besides its attempt: inserted, claimed (the
-- lease: `lease_owner` is read by two indexes' conditions, so a new row version with an
-- entry in every index) and finished. Now the expansion writes one `run_slices` row per
-- SLICE (500) deliveries of a run, a range of client ids, and a dispatcher claims the
-- slice (one small row, with SKIP LOCKED) and reads its deliveries through the
-- (run_id, client_id) key; the delivery's row is then written in place when it is marked
-- SENDING (HOT: no indexed column changes) and once more with its outcome. Measured at the
-- floor (bench/postgres_floor.sh, README): PostgreSQL CPU per delivery down by a quarter
-- to a third.
--
-- A delivery belongs to its slice (`slice_id`) until its first outcome, deferral,
-- cancellation or rescue clears it; from then on (a retry, a wait for a window or a
-- budget) it is claimed on its own, with its own lease, as before. Deliveries written
-- before this migration have no slice and are claimed on their own.
CREATE TABLE run_slices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    mailing_id uuid NOT NULL,
    -- The clients (after_client, through_client] in id order.
    after_client uuid NOT NULL,
    through_client uuid NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    lease_owner uuid,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_slices_claimable_idx ON run_slices (next_attempt_at, id) WHERE lease_owner IS NULL;
CREATE INDEX run_slices_leased_idx ON run_slices (lease_expires_at) WHERE lease_owner IS NOT NULL;
CREATE INDEX run_slices_run_idx ON run_slices (run_id);

ALTER TABLE deliveries ADD COLUMN slice_id bigint;
DROP INDEX deliveries_claimable_idx;
CREATE INDEX deliveries_claimable_idx ON deliveries (next_attempt_at)
    WHERE status = 'pending' AND lease_owner IS NULL AND slice_id IS NULL;

-- dispatch_advance with the slices this instance holds for the two groups ($10). A
-- delivery is this instance's when its own lease is (`lease_owner`), or, while it belongs
-- to a slice, when the slice's is. The slices are locked (FOR SHARE) before any delivery
-- row: a rescuer or a claim that took the slice meanwhile is then seen (a mark never
-- trusts a lease read from an older snapshot), and every statement that takes a slice and
-- then its deliveries takes them in the same order (no deadlock). Marking a slice's
-- delivery counts its attempt (`attempt_count`, read by no index, so the row is still
-- written in place).
DROP FUNCTION dispatch_advance(uuid[], text[], bigint[], int[], text[], text[], uuid, uuid[], uuid[]);
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
