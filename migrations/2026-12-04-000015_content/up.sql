-- Newsletters: a message is TEXT (text/plain, as before), MARKDOWN or HTML (both sent as
-- multipart/alternative), may carry a hand-written text part, and may sit in a layout.

-- A layout: HTML with {{ content }} where the message goes; owned and soft-deleted like
-- messages, so a run that started with it keeps its snapshot.
CREATE TABLE layouts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL,
    html text NOT NULL CONSTRAINT layouts_html_size CHECK (octet_length(html) <= 1048576),
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- The owner's layouts, newest first (keyset paging), live ones only.
CREATE INDEX layouts_owner_page ON layouts (owner_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

ALTER TABLE messages
    ADD COLUMN format text NOT NULL DEFAULT 'text'
        CONSTRAINT messages_format_known CHECK (format IN ('text', 'markdown', 'html')),
    ADD COLUMN text_body text,
    ADD COLUMN layout_id uuid REFERENCES layouts (id);
-- "Is this layout used?" (deleteLayout), without a scan of every message.
CREATE INDEX messages_layout ON messages (layout_id) WHERE layout_id IS NOT NULL AND deleted_at IS NULL;

-- What a run sends is snapshotted when it starts: the format, the text part and the
-- layout's HTML as they were then (a later edit changes later runs only).
ALTER TABLE runs
    ADD COLUMN format text NOT NULL DEFAULT 'text'
        CONSTRAINT runs_format_known CHECK (format IN ('text', 'markdown', 'html')),
    ADD COLUMN text_body text,
    ADD COLUMN layout_html text;
