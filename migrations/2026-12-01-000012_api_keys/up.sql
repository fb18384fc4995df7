-- API keys: credentials for GraphQL client apps, which should hold neither a password nor a
-- browser session. Only the SHA-256 of the secret is kept (as for sessions); the secret is
-- shown once, when the key is made. READ keys may not run mutations (checked by the API).
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Deleting an account deletes its keys with it.
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    scope        text NOT NULL CHECK (scope IN ('read', 'write')),
    -- Signing in looks the key up by this; unique so two keys can never share a secret.
    secret_hash  bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Written at most once a minute per key, not on every request.
    last_used_at timestamptz
);

-- `apiKeys`: a user's keys, newest first.
CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at DESC);
