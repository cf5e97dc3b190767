-- Which run owns a 'sending' mailout. A run writes its heartbeat only while
-- it still owns the mailout, so a forced resume (or an operator setting the
-- status by hand) makes the old run stop at its next batch.
ALTER TABLE mailouts ADD COLUMN runner_id uuid;
