-- Sending infrastructure: SMTP servers and sender identities managed by admins, rate
-- limits every instance shares (leased in slices), the server that carried each attempt,
-- and a mailing's identity and sending window.

-- The mail servers deliveries may go through. `url` holds an smtp:// or smtps:// URL with no
-- credentials in plain text, or, with credentials, 'sealed:' and the whole URL encrypted
-- under CREDENTIALS_KEY (ChaCha20-Poly1305): a dump of the database alone does not reveal
-- them. The built-in row stands for each instance's own SMTP_URL (or outbox), so existing
-- set-ups keep running and their attempts can name a server too.
CREATE TABLE smtp_servers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    url text,
    host text NOT NULL,
    builtin boolean NOT NULL DEFAULT false,
    max_connections int NOT NULL DEFAULT 8 CHECK (max_connections BETWEEN 1 AND 1000),
    -- Lower goes first.
    priority int NOT NULL DEFAULT 100,
    per_second int CHECK (per_second > 0),
    per_minute int CHECK (per_minute > 0),
    per_hour int CHECK (per_hour > 0),
    per_day int CHECK (per_day > 0),
    -- Set by an instance whose circuit breaker for this server opened (until when it will
    -- probe again), cleared when it closes: what the API shows, whichever instance answers.
    breaker_open_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Deleted servers stay, so the attempt log can still name them.
    deleted_at timestamptz,
    CHECK (builtin OR url IS NOT NULL)
);
-- Names tell live servers apart in the API, the web page and /metrics.
CREATE UNIQUE INDEX smtp_servers_name_key ON smtp_servers (lower(name)) WHERE deleted_at IS NULL;
-- One built-in server.
CREATE UNIQUE INDEX smtp_servers_builtin_key ON smtp_servers (builtin) WHERE builtin;
INSERT INTO smtp_servers (id, name, host, builtin, priority)
VALUES ('00000000-0000-0000-0000-000000000001', 'SMTP_URL', 'SMTP_URL', true, 1000);

-- Who a mailing's mail comes from, and which servers may carry it. `dkim_key` is sealed
-- like a server's credentials.
CREATE TABLE sender_identities (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    email text NOT NULL,
    reply_to text,
    dkim_domain text,
    dkim_selector text,
    dkim_key text,
    -- Every user may use it; otherwise those in sender_identity_users (admins always).
    allow_everyone boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CHECK ((dkim_domain IS NULL) = (dkim_selector IS NULL) AND (dkim_domain IS NULL) = (dkim_key IS NULL))
);

CREATE TABLE sender_identity_servers (
    identity_id uuid NOT NULL REFERENCES sender_identities (id) ON DELETE CASCADE,
    server_id uuid NOT NULL REFERENCES smtp_servers (id) ON DELETE CASCADE,
    PRIMARY KEY (identity_id, server_id)
);

CREATE TABLE sender_identity_users (
    identity_id uuid NOT NULL REFERENCES sender_identities (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (identity_id, user_id)
);
-- "Which identities may this user use" reads by user.
CREATE INDEX sender_identity_users_user ON sender_identity_users (user_id);

ALTER TABLE mailings
    ADD COLUMN sender_identity_id uuid REFERENCES sender_identities (id),
    -- {"days": [1..7], "from_hour": 0-23, "to_hour": 1-24} in the mailing's time zone.
    ADD COLUMN sending_window jsonb;

-- No foreign key: the attempt log is written once per send and read by id; a server row is
-- never deleted (deleted_at), so the reference stays good without the check's cost.
ALTER TABLE attempts ADD COLUMN smtp_server_id uuid;

-- Shared rate limits: one row per scope ('server:<id>', 'domain:<name>') and window length
-- in milliseconds, counting what instances have leased in the current window (aligned to the
-- epoch, so days start at midnight UTC). Instances lease small slices (`lease_budget`), not
-- one message at a time, and spend them locally; a slice unspent when its window ends is
-- lost, never carried over, so a server never gets more than its limit in a window.
CREATE TABLE send_budgets (
    scope text NOT NULL,
    window_ms bigint NOT NULL,
    window_start timestamptz NOT NULL,
    used int NOT NULL,
    PRIMARY KEY (scope, window_ms)
);

-- Leases up to `want` sends of `scope` under limits[i] per windows[i] milliseconds, in the
-- windows now current: granted (0 when one is spent), when the first spent window ends
-- (wait_ms), and how long the grant is good for (valid_ms: until the shortest window ends).
-- The rows stay locked to the end of the caller's statement, so instances lease one after
-- the other.
CREATE FUNCTION lease_budget(p_scope text, p_windows bigint[], p_limits int[], p_want int,
                             OUT granted int, OUT wait_ms bigint, OUT valid_ms bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    now_ms double precision := extract(epoch FROM now()) * 1000;
    w bigint;
    lim int;
    used_now int;
    ends_in bigint;
BEGIN
    granted := p_want;
    wait_ms := 0;
    valid_ms := NULL;
    FOR i IN 1 .. coalesce(array_length(p_windows, 1), 0) LOOP
        w := p_windows[i];
        lim := p_limits[i];
        INSERT INTO send_budgets AS b (scope, window_ms, window_start, used)
        VALUES (p_scope, w, to_timestamp(floor(now_ms / w) * w / 1000), 0)
        ON CONFLICT (scope, window_ms) DO UPDATE
            SET used = CASE WHEN b.window_start < excluded.window_start THEN 0 ELSE b.used END,
                window_start = greatest(b.window_start, excluded.window_start)
        RETURNING used INTO used_now;
        ends_in := ceil((floor(now_ms / w) + 1) * w - now_ms)::bigint;
        IF used_now >= lim THEN
            wait_ms := greatest(wait_ms, ends_in);
        END IF;
        granted := least(granted, greatest(lim - used_now, 0));
        valid_ms := least(coalesce(valid_ms, ends_in), ends_in);
    END LOOP;
    IF granted > 0 THEN
        UPDATE send_budgets SET used = used + granted WHERE scope = p_scope AND window_ms = ANY (p_windows);
    ELSE
        granted := 0;
    END IF;
END
$$;

-- dispatch_advance, now also recording which server carried each attempt ($9).
DROP FUNCTION dispatch_advance(uuid[], text[], bigint[], int[], text[], text[], uuid, uuid[]);
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
