-- What PostgreSQL alone can do with the dispatcher's bookkeeping: no mail server, no
-- dispatcher process. Loaded by bench/postgres_floor.sh into a database migrated to the
-- current schema (so `dispatch_advance` is the real one, from the migrations).
--
-- `floor_seed(n)` makes one owner, one message, n clients, one mailing and a running
-- run, and expands it into n pending deliveries in slices of 500 as the expansion does
-- (src/dispatch/runs.rs: a `run_slices` row per 500 clients in id order, then the
-- deliveries with their slice), timed.
--
-- `floor_batch(me, batch, grp)` does what one dispatcher does with one batch: the claim of
-- src/dispatch/queue.rs (deliveries on their own, CLAIM_SQL, of which there are none here;
-- then slices, CLAIM_SLICES_SQL, and their deliveries, SLICE_DELIVERIES_SQL), commit; then,
-- group by group of `grp`, one `dispatch_advance` call that records the previous group as
-- sent (an attempt each) and marks the next SENDING, and a commit; then the slice is done
-- (`finish_slices`): the same statements, rows and commits as the dispatcher, minus the
-- network. The SQL texts are copies: keep them in step with the Rust.
--
-- `floor_minimal(me)` is the issue's reference loop, "claim 100 / complete 100", on a bare
-- jobs table with one partial index (`floor_jobs`, made by `floor_minimal_seed()`).

CREATE OR REPLACE FUNCTION floor_seed(recipients int) RETURNS interval LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz;
BEGIN
    TRUNCATE users, messages, clients, mailings, runs, deliveries, attempts CASCADE;
    INSERT INTO users (id, email, full_name, password_hash, email_verified_at)
    VALUES ('00000000-0000-0000-0000-000000000001', 'bench@example.com', 'Bench', 'x', now());
    INSERT INTO messages (id, owner_id, subject, body)
    VALUES ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'Benchmark', 'Hello');
    INSERT INTO clients (owner_id, email, full_name)
    SELECT '00000000-0000-0000-0000-000000000001', 'client' || i || '@example.com', 'Client ' || i
    FROM generate_series(1, recipients) AS i;
    INSERT INTO mailings (id, owner_id, message_id, starts_at, periodicity, next_run_at)
    VALUES ('00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001',
            '00000000-0000-0000-0000-000000000002', now() + interval '1 day', 'once', now() + interval '1 day');
    INSERT INTO mailing_clients (mailing_id, client_id)
    SELECT '00000000-0000-0000-0000-000000000003', id FROM clients;
    INSERT INTO runs (id, mailing_id, run_at, status, subject, body, mail_from)
    VALUES ('00000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000003', now(), 'running',
            'Benchmark', 'Hello', 'bench@example.com');
    started := clock_timestamp();
    WITH members AS (
        SELECT c.id, c.email, c.full_name, (row_number() OVER (ORDER BY c.id) - 1) / 500 AS slice
        FROM mailing_clients mc JOIN clients c ON c.id = mc.client_id
        WHERE mc.mailing_id = '00000000-0000-0000-0000-000000000003' AND c.deleted_at IS NULL AND c.unsubscribed_at IS NULL),
    bounds AS (
        SELECT slice, (array_agg(id ORDER BY id DESC))[1] AS through_client FROM members GROUP BY slice),
    slices AS (
        INSERT INTO run_slices (run_id, mailing_id, after_client, through_client, next_attempt_at)
        SELECT '00000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000003',
               coalesce(lag(through_client) OVER (ORDER BY slice), '00000000-0000-0000-0000-000000000000'),
               through_client, now()
        FROM bounds
        RETURNING id, after_client, through_client)
    INSERT INTO deliveries (run_id, mailing_id, owner_id, client_id, email, full_name, slice_id)
    SELECT '00000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-000000000003',
           '00000000-0000-0000-0000-000000000001', m.id, m.email, m.full_name, s.id
    FROM members m JOIN slices s ON m.id > s.after_client AND m.id <= s.through_client
    ON CONFLICT (run_id, client_id) DO NOTHING;
    RETURN clock_timestamp() - started;
END
$$;

CREATE OR REPLACE PROCEDURE floor_batch(me uuid, batch int, grp int) LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
    attempts int[];
    slices bigint[];
    whole boolean[];
    i int := 1;
    previous uuid[] := '{}';
    previous_attempts int[] := '{}';
    sent int;
BEGIN
    WITH due AS (
        SELECT d.id FROM deliveries d
        WHERE d.status = 'pending' AND d.lease_owner IS NULL AND d.slice_id IS NULL AND d.next_attempt_at <= now()
          AND EXISTS (SELECT 1 FROM mailings m JOIN users u ON u.id = m.owner_id
                      WHERE m.id = d.mailing_id AND NOT m.paused AND m.deleted_at IS NULL AND u.is_active)
        ORDER BY d.next_attempt_at
        LIMIT batch
        FOR UPDATE OF d SKIP LOCKED),
    claimed AS (
        UPDATE deliveries d SET lease_owner = me, lease_expires_at = now() + interval '2 minutes',
            attempt_count = d.attempt_count + 1, updated_at = now()
        FROM due WHERE d.id = due.id
        RETURNING d.id, d.attempt_count)
    SELECT coalesce(array_agg(id), '{}'), coalesce(array_agg(attempt_count), '{}') INTO ids, attempts FROM claimed;
    WITH leased AS (
        UPDATE run_slices s SET lease_owner = me, lease_expires_at = now() + interval '2 minutes'
        WHERE s.id IN (SELECT x.id FROM run_slices x
                       WHERE x.lease_owner IS NULL AND x.next_attempt_at <= now()
                         AND EXISTS (SELECT 1 FROM mailings m JOIN users u ON u.id = m.owner_id
                                     WHERE m.id = x.mailing_id AND NOT m.paused AND m.deleted_at IS NULL AND u.is_active)
                       ORDER BY x.next_attempt_at, x.id
                       LIMIT (batch - coalesce(array_length(ids, 1), 0) + 499) / 500
                       FOR UPDATE OF x SKIP LOCKED)
        RETURNING s.id)
    SELECT coalesce(array_agg(id), '{}') INTO slices FROM leased;
    WITH ranked AS (
        SELECT d.id, d.attempt_count + 1 AS attempt_count, s.id AS slice_id,
               row_number() OVER (ORDER BY s.id, d.client_id) AS n
        FROM run_slices s JOIN deliveries d ON d.run_id = s.run_id
            AND d.client_id > s.after_client AND d.client_id <= s.through_client
        WHERE s.id = ANY(slices) AND d.slice_id = s.id AND d.status = 'pending' AND d.sending_since IS NULL),
    counted AS (SELECT *, max(n) OVER (PARTITION BY slice_id) <= batch AS whole FROM ranked)
    SELECT ids || coalesce(array_agg(id ORDER BY n), '{}'), attempts || coalesce(array_agg(attempt_count ORDER BY n), '{}')
    INTO ids, attempts FROM counted WHERE n <= batch;
    COMMIT;
    LOOP
        sent := coalesce(array_length(previous, 1), 0);
        EXIT WHEN sent = 0 AND i > coalesce(array_length(ids, 1), 0);
        PERFORM dispatch_advance(previous, array_fill('sent'::text, ARRAY[sent]), array_fill(0::bigint, ARRAY[sent]),
                                 previous_attempts, array_fill('success'::text, ARRAY[sent]),
                                 array_fill('250 2.0.0 Ok: queued as 4F2A31C0D5'::text, ARRAY[sent]),
                                 me, coalesce(ids[i:i + grp - 1], '{}'),
                                 array_fill('00000000-0000-0000-0000-000000000001'::uuid, ARRAY[sent]), slices,
                                 '{00000000-0000-0000-0000-000000000003}'::uuid[]);
        COMMIT;
        previous := coalesce(ids[i:i + grp - 1], '{}');
        previous_attempts := coalesce(attempts[i:i + grp - 1], '{}');
        i := i + grp;
    END LOOP;
    DELETE FROM run_slices WHERE id = ANY(slices) AND lease_owner = me;
    COMMIT;
END
$$;

CREATE OR REPLACE FUNCTION floor_minimal_seed() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DROP TABLE IF EXISTS floor_jobs;
    CREATE TABLE floor_jobs (id bigserial PRIMARY KEY, status text NOT NULL DEFAULT 'pending',
        run_at timestamptz NOT NULL DEFAULT now(), lease_owner uuid, lease_expires_at timestamptz,
        done_at timestamptz, payload text);
    CREATE INDEX floor_jobs_claimable ON floor_jobs (run_at) WHERE status = 'pending' AND lease_owner IS NULL;
    INSERT INTO floor_jobs (payload) SELECT 'client' || i || '@example.com' FROM generate_series(1, 2000000) AS i;
    ANALYZE floor_jobs;
END
$$;

CREATE OR REPLACE PROCEDURE floor_minimal(me uuid) LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    WITH due AS (
        SELECT id FROM floor_jobs WHERE status = 'pending' AND lease_owner IS NULL AND run_at <= now()
        ORDER BY run_at LIMIT 100 FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE floor_jobs j SET lease_owner = me, lease_expires_at = now() + interval '2 minutes'
        FROM due WHERE j.id = due.id RETURNING j.id)
    SELECT array_agg(id) INTO ids FROM claimed;
    COMMIT;
    UPDATE floor_jobs SET status = 'done', done_at = now(), lease_owner = NULL, lease_expires_at = NULL
    WHERE id = ANY(ids) AND lease_owner = me;
    COMMIT;
END
$$;
