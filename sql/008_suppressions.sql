-- The suppression list: addresses that must never be added again, kept as
-- keyed hashes only (issue 12, item 8: `subscribers forget`, GDPR article
-- 17). An erased address leaves every other table; what stays is
-- HMAC-SHA256(key, lower-cased address), the key derived from a secret the
-- database never holds (see subscribers.suppression_key), so a copy of the
-- database alone cannot tell whether a given address was ever on the list.
-- `subscribers import` refuses an address whose hash is here.
CREATE TABLE suppressions (
    address_hash bytea PRIMARY KEY CHECK (length(address_hash) = 32),
    -- Which key made the hash (a fingerprint of it): an import under another
    -- key could not match a single entry, so it is refused instead.
    key_id       text NOT NULL,
    reason       text NOT NULL DEFAULT 'erasure',
    created_at   timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE suppressions ENABLE ROW LEVEL SECURITY;
