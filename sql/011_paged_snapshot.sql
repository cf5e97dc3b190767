-- The webhook answers at once for any list (issue 14, item 2). The claim
-- only moves the mailout 'ready -> sending' (the conditional UPDATE that
-- makes it exactly once) and counts the active subscribers; the run then
-- queues them into send_logs in pages, by subscriber id, each page one
-- transaction that commits its rows and the cursor together, so a run that
-- dies between pages is resumed from the cursor (store.queue_page).
--
--   queuing        true from the claim until the last page has committed:
--                  a run never ends the mailout 'sent' while it is true
--   queue_cursor   the highest subscriber id the pages have gone through
--                  (NULL: none yet)
--   queue_merge    the ledger had rows at the claim (a mailout set back to
--                  'ready' by hand): its pages skip addresses already there
--   queued_rows    the rows in its ledger so far: those of an earlier run (set back
--                  to 'ready' by hand) plus those the pages have queued
--
-- What 006 (section 3) says of the claim's snapshot holds for each page: a
-- page locks its mailout's row (FOR UPDATE) before it inserts, so a DELETE
-- of the mailout waits for the page and its trigger then sees the page's
-- rows, and a page after the DELETE finds no mailout and inserts nothing;
-- each row's subscriber_id is read in the same statement, under the lock
-- of section 4, which the page takes itself.
--
-- Mailouts claimed before this migration were queued whole by their claim:
-- the defaults say so (nothing left to queue).
ALTER TABLE mailouts
    ADD COLUMN queuing boolean NOT NULL DEFAULT false,
    ADD COLUMN queue_cursor uuid,
    ADD COLUMN queue_merge boolean NOT NULL DEFAULT false,
    ADD COLUMN queued_rows integer NOT NULL DEFAULT 0;

-- The claim no longer reads subscribers: the pages do, and each takes the
-- advisory lock that a subscriber DELETE takes exclusively (006, section 4)
-- itself, shared (store.queue_page). The claim's trigger taking it goes, so a
-- webhook never waits for a `subscribers forget` under way.
DROP TRIGGER send_logs_claim_lock ON mailouts;
DROP FUNCTION send_logs_claim_lock();
