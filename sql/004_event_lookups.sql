-- Look-ups by SES message id for every event, linked or not: a Delivery that
-- arrives before its batch is recorded is applied when the batch is.
DROP INDEX IF EXISTS ses_events_unlinked;
CREATE INDEX ses_events_ses_message_id ON ses_events (ses_message_id) WHERE ses_message_id IS NOT NULL;

-- SES's own id of a bounce or complaint. Identity notifications and a
-- configuration set can both publish the same bounce (two SNS messages, one
-- feedbackId): it is recorded twice but applied once.
ALTER TABLE ses_events ADD COLUMN feedback_id text;
CREATE INDEX ses_events_feedback_id ON ses_events (event_type, feedback_id) WHERE feedback_id IS NOT NULL;
