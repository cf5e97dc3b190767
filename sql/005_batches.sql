-- Which batch took a row. Taking a batch is retried when the connection
-- drops; if the first attempt's COMMIT went through but its answer was lost,
-- the retry finds its rows by this id instead of taking new ones.
ALTER TABLE send_logs ADD COLUMN batch_id uuid;
CREATE INDEX send_logs_batch ON send_logs (batch_id) WHERE status = 'sending';
