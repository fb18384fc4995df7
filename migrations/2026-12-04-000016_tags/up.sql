-- Tags: a user's own labels for clients ("vip", "newsletter"), the first part of audiences.

CREATE TABLE tags (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL CONSTRAINT tags_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL DEFAULT now()
);
-- One tag per name and owner, whatever the case; also the owner's list, by name.
CREATE UNIQUE INDEX tags_owner_name_key ON tags (owner_id, lower(name));

-- Which clients carry which tag. Tagging the same client twice is one row.
CREATE TABLE client_tags (
    tag_id uuid NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    client_id uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    PRIMARY KEY (tag_id, client_id)
);
-- A client's tags (Client.tags), without a scan of every tag's rows.
CREATE INDEX client_tags_client ON client_tags (client_id);
