-- Accounts: users, their sign-in sessions and the one-time tokens mailed to them.
-- Every secret (session token, e-mail token) is stored only as a SHA-256 hash, so a
-- leaked database does not hand out working sessions or links.

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Stored as typed; uniqueness and look-ups use lower(email).
    email text NOT NULL,
    full_name text NOT NULL,
    -- argon2id PHC string. NULL once the account is deleted (personal data removed).
    password_hash text,
    role text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'manager', 'admin')),
    -- false: blocked by a manager or admin; cannot log in, mailings stop sending.
    is_active boolean NOT NULL DEFAULT true,
    email_verified_at timestamptz,
    -- Deleted accounts keep their row (anonymised) so statistics and history stay consistent.
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One live account per address, whatever its case; deleted accounts free the address.
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE deleted_at IS NULL;

CREATE TABLE sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the opaque bearer token / cookie value.
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    -- Sliding expiry: moved forward on use, within SESSION_TTL.
    expires_at timestamptz NOT NULL
);

-- "Revoke every session of this user" and the expired-session sweep.
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE email_tokens (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    -- Single use: set when redeemed.
    used_at timestamptz
);

-- Counting a user's outstanding tokens of one purpose (reset: at most 3).
CREATE INDEX email_tokens_user_purpose_idx ON email_tokens (user_id, purpose);
