-- Audiences: a mailing reaches every live client of its owner, picked clients
-- (mailing_clients, as before), clients with given tags, and/or a segment; membership is
-- worked out when each run starts. And large imports, staged through COPY.

ALTER TABLE mailings
    ADD COLUMN audience_all boolean NOT NULL DEFAULT false,
    -- {"match": "ALL", "conditions": [{"field": ..., "op": ..., "value": ...}]}, checked on save.
    ADD COLUMN audience_segment jsonb;

CREATE TABLE mailing_tags (
    mailing_id uuid NOT NULL REFERENCES mailings (id) ON DELETE CASCADE,
    tag_id uuid NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (mailing_id, tag_id)
);
CREATE INDEX mailing_tags_tag ON mailing_tags (tag_id);

-- Segments on attributes: `attributes @> {...}` (EQ) and `attributes ? key` (EXISTS) are
-- answered from this index, not by reading every client.
CREATE INDEX clients_attributes_gin ON clients USING gin (attributes) WHERE deleted_at IS NULL;
-- "All my clients" counted from the index alone.
CREATE INDEX clients_owner_subscribed ON clients (owner_id)
    WHERE deleted_at IS NULL AND unsubscribed_at IS NULL;

-- An upload of clients: the file is streamed into import_rows (COPY), then a background
-- job validates and upserts it in chunks, counting as it goes.
CREATE TABLE import_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    -- Data lines in the file (known once the upload is in).
    total integer NOT NULL DEFAULT 0,
    processed integer NOT NULL DEFAULT 0,
    created integer NOT NULL DEFAULT 0,
    updated integer NOT NULL DEFAULT 0,
    error_count integer NOT NULL DEFAULT 0,
    -- Why a FAILED import stopped.
    failure text,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX import_jobs_owner ON import_jobs (owner_id, created_at DESC);

-- The cells of each line as read, until the job has taken them.
CREATE TABLE import_rows (
    job_id uuid NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
    line integer NOT NULL,
    email text NOT NULL,
    full_name text NOT NULL,
    comment text NOT NULL,
    tags text NOT NULL,
    -- The attribute columns' non-empty cells, as a JSON object of strings.
    attributes text NOT NULL,
    -- A line the CSV reader could not read, or an address already on an earlier line.
    problem text,
    PRIMARY KEY (job_id, line)
);

CREATE TABLE import_errors (
    job_id uuid NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
    line integer NOT NULL,
    message text NOT NULL,
    PRIMARY KEY (job_id, line)
);
