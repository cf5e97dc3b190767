-- The specification's three tables, plus the columns the executor needs to
-- send exactly once and to show what happened. Every added column has a
-- default (or is nullable), so a row inserted with only the specification's
-- columns works.

CREATE TABLE subscribers (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email             text NOT NULL CHECK (email LIKE '%_@_%'),
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'unsubscribed', 'bounced', 'complained')),
    bounce_type       text,
    bounce_subtype    text,
    status_updated_at timestamptz,
    from_name         text,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- One subscriber per address, whatever its case: "Ann@X.org" and "ann@x.org"
-- reach the same mailbox and must not get two copies.
CREATE UNIQUE INDEX subscribers_email_lower_key ON subscribers (lower(email));
CREATE INDEX idx_subscribers_status ON subscribers (status);

CREATE TABLE mailouts (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    subject        text NOT NULL,
    body           text NOT NULL,
    status         text NOT NULL DEFAULT 'draft'
                   CHECK (status IN ('draft', 'ready', 'sending', 'sent', 'failed', 'paused')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    -- Ours: when the claim happened, how many recipients it snapshotted, the
    -- last sign of life of the runner, and why a run stopped early.
    started_at     timestamptz,
    recipients     integer,
    heartbeat_at   timestamptz,
    error          text
);

-- The per-recipient ledger. The claim snapshots every active subscriber into
-- it as 'queued'; the sender moves each row queued -> sending -> sent|failed
-- (or queued -> skipped when the subscriber left after the claim). A row is
-- marked 'sending' and committed before its email goes to SES, so a crash can
-- never lead to a second copy: a row left in 'sending' is in doubt, never resent.
CREATE TABLE send_logs (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    mailout_id     uuid NOT NULL REFERENCES mailouts (id) ON DELETE CASCADE,
    email          text NOT NULL,
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'skipped', 'unknown', 'delivered')),
    error_message  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    subscriber_id  uuid REFERENCES subscribers (id) ON DELETE SET NULL,
    ses_message_id text,
    attempted_at   timestamptz,
    updated_at     timestamptz,
    -- Exactly one row, and so at most one email, per recipient and mailout.
    CONSTRAINT send_logs_one_per_recipient UNIQUE (mailout_id, email)
);

-- The sender reads the next batch with "queued rows of this mailout, by id":
-- this partial index holds only rows still to send, so it stays small and the
-- read stays fast however far the mailout has come.
CREATE INDEX send_logs_queue ON send_logs (mailout_id, id) WHERE status = 'queued';
CREATE INDEX send_logs_ses_message_id ON send_logs (ses_message_id) WHERE ses_message_id IS NOT NULL;

-- Supabase exposes the public schema through its REST API. Row-level
-- security with no policies means the anon and authenticated keys see and
-- change nothing; the service connects as the tables' owner, which RLS does
-- not restrict.
ALTER TABLE subscribers ENABLE ROW LEVEL SECURITY;
ALTER TABLE mailouts ENABLE ROW LEVEL SECURITY;
ALTER TABLE send_logs ENABLE ROW LEVEL SECURITY;
