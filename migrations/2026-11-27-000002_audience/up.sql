-- What a user sends and to whom: clients (recipients) and messages (subject and body).
-- Both are soft-deleted: deliveries and attempts that refer to them stay readable.

CREATE TABLE clients (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id uuid NOT NULL REFERENCES users (id),
    email text NOT NULL,
    full_name text NOT NULL,
    comment text NOT NULL DEFAULT '',
    -- Set by the one-click unsubscribe link; such clients get no further mail.
    unsubscribed_at timestamptz,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A client's address is unique per owner among live clients; its violation is a CONFLICT.
CREATE UNIQUE INDEX clients_owner_email_key ON clients (owner_id, lower(email)) WHERE deleted_at IS NULL;
-- Keyset pagination of an owner's live clients, newest first.
CREATE INDEX clients_owner_created_idx ON clients (owner_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id uuid NOT NULL REFERENCES users (id),
    subject text NOT NULL,
    body text NOT NULL,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX messages_owner_created_idx ON messages (owner_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
