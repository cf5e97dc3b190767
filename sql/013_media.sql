-- Images of mailouts, served by the service itself (issue 16: Notion is the
-- editor). A file uploaded to Notion is reachable only through a signed URL
-- that expires after an hour, so an email pointing at it would show a broken
-- image to everyone who opens it later. The importer downloads such an image
-- once (media.fetch_image) and the email points at
-- APP_BASE_URL/media/<sha256>.<ext> (web/media.py), which serves this row.
--
-- Rows are content-addressed: the key is the SHA-256 of the bytes, so the
-- same image imported twice (or by two mailouts) is stored once, and a row
-- never changes, which is what lets the endpoint tell caches to keep it for
-- a year. The checks hold whatever writes the table: the key is the hash of
-- the bytes, and the type is one of the raster types media.py accepts (never
-- SVG, which can carry script).
CREATE TABLE media (
    sha256       text PRIMARY KEY CHECK (sha256 = encode(sha256(bytes), 'hex')),
    content_type text NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg', 'image/gif', 'image/webp')),
    bytes        bytea NOT NULL CHECK (length(bytes) > 0),
    size         integer GENERATED ALWAYS AS (length(bytes)) STORED,
    -- Where it was first downloaded from, for the record only: a Notion URL
    -- stops working an hour later, and nothing reads it back.
    source_url   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- As every table (001, 008): row-level security with no policy, so that a
-- role other than the owner reads no row. db.upgrade calls 007's
-- revoke_api_roles after this file, which takes away what Supabase's default
-- privileges grant the anon and authenticated roles on a new table.
ALTER TABLE media ENABLE ROW LEVEL SECURITY;
