-- SES bounce, complaint and delivery events, delivered by Amazon SNS.

-- Transient bounces in a row with no delivery in between; the third
-- suppresses the address. A Delivery resets it.
ALTER TABLE subscribers ADD COLUMN soft_bounces integer NOT NULL DEFAULT 0;
-- Why the status last changed, in words (e.g. "complaint: abuse").
ALTER TABLE subscribers ADD COLUMN status_reason text;

-- Every processed SNS message, once: SNS delivers at least once, so the
-- unique MessageId turns a repeat into a no-op.
CREATE TABLE ses_events (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sns_message_id text NOT NULL,
    sns_type       text NOT NULL,
    event_type     text NOT NULL,
    addresses      text[] NOT NULL DEFAULT '{}',
    ses_message_id text,
    mailout_id     uuid REFERENCES mailouts (id) ON DELETE SET NULL,
    bounce_type    text,
    payload        jsonb NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ses_events_sns_message_id_key UNIQUE (sns_message_id)
);

-- The reputation guard counts a mailout's bounces and complaints after
-- every batch.
CREATE INDEX ses_events_by_mailout ON ses_events (mailout_id, event_type) WHERE mailout_id IS NOT NULL;

ALTER TABLE ses_events ENABLE ROW LEVEL SECURITY;

-- Events that arrive before their batch is recorded are linked to their
-- mailout by SES message id once it is.
CREATE INDEX ses_events_unlinked ON ses_events (ses_message_id) WHERE mailout_id IS NULL;
