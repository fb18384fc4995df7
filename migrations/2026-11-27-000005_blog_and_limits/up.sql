-- The public blog, and the counters behind rate limits (shared by every instance).

CREATE TABLE blog_posts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- SET NULL: a deleted author's posts stay; author_name keeps the byline.
    author_id uuid REFERENCES users (id) ON DELETE SET NULL,
    author_name text NOT NULL,
    title text NOT NULL,
    -- Markdown or plain text; rendered as text, never trusted as HTML.
    body text NOT NULL,
    image_url text,
    published boolean NOT NULL DEFAULT false,
    -- Set when first published, kept across unpublish/republish.
    published_at timestamptz,
    views integer NOT NULL DEFAULT 0,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The public list: published posts, newest first.
CREATE INDEX blog_posts_published_idx ON blog_posts (published_at DESC, id DESC)
    WHERE published AND deleted_at IS NULL;

-- Fixed-window counters: key names what is limited ("login:account:<id>", "register:ip:<ip>").
CREATE TABLE rate_limits (
    key text NOT NULL,
    window_start timestamptz NOT NULL,
    count integer NOT NULL DEFAULT 0,
    PRIMARY KEY (key, window_start)
);

-- Sweeping old windows.
CREATE INDEX rate_limits_window_idx ON rate_limits (window_start);
