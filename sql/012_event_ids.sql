-- Issue 14, items 3 and 4: the event behind a claim, and in-doubt rows that
-- SES's own events resolve.

-- The Notion event that claimed the mailout (the webhook body's
-- source.event_id). Notion retries a webhook that failed or timed out with
-- the same event id: that retry is answered as the first request was, while
-- any other request for a claimed mailout stays a 409. The id is the
-- caller's text: web/notion.py accepts at most 200 printable characters,
-- and this check holds whatever writes the column.
ALTER TABLE mailouts ADD COLUMN claim_event_id text
    CHECK (claim_event_id IS NULL OR length(claim_event_id) BETWEEN 1 AND 200);

-- How many of the mailout's in-doubt ('unknown') rows an SES event resolved
-- (a Send, Delivery, Bounce, Complaint, Reject or Rendering Failure event
-- with our mailout_id tag and the row's address); `mailout status` and
-- GET /mailouts/<id> show it.
ALTER TABLE mailouts ADD COLUMN resolved_from_events integer NOT NULL DEFAULT 0;

-- Every SES event of a tagged mailout looks for an in-doubt row of its
-- address. In-doubt rows are few (the emails in flight when a run died),
-- so this index is nearly always empty: the look-up costs one probe of a
-- page or two, and only rows entering 'unknown' pay for its upkeep.
CREATE INDEX send_logs_unknown ON send_logs (mailout_id, email COLLATE "C") WHERE status = 'unknown';

-- What the claim's 202 said `recipients` was (the active subscribers at the
-- claim): `recipients` itself becomes the rows really queued once the last
-- page is in, and a retry of the same Notion event answers what the first
-- answer said (store.start_queuing writes it, store.claimed_by_event reads it).
ALTER TABLE mailouts ADD COLUMN claim_recipients integer;
