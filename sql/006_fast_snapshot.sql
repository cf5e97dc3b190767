-- A faster claim (issue 6: the first email within 2 s for 100,000
-- recipients, within 15 s for a million). The claim's snapshot is one
-- INSERT ... SELECT of every active subscriber into send_logs, and its cost
-- was per row: two foreign-key checks, a random primary key, a unique index
-- compared with the database's collation, and ON CONFLICT's speculative
-- insertion (store.snapshot_recipients now uses ON CONFLICT only for a
-- mailout whose ledger already has rows). Claim and snapshot of 1,000,000
-- subscribers on a busy two-core machine: 53 s before, 17 s after (100,000:
-- 6.3 s before, 2.5 s after).
-- Every promise of the ledger stays: one row per (mailout, address), a
-- mailout's rows go with it, a deleted subscriber's rows keep their history
-- with subscriber_id NULL.


-- 1. Time-ordered ids. gen_random_uuid() scatters a million new keys over
-- the whole primary key and over the mailout's part of send_logs_queue, so
-- nearly every insert lands on another page (and after a checkpoint writes
-- that whole page to the WAL again). A version 7 UUID (RFC 9562: 48 bits of
-- Unix time in milliseconds, then random bits) puts one snapshot's rows at
-- the end of both indexes, and take_batch's "ORDER BY id" becomes the order
-- of the snapshot. Plain SQL, one expression, so the planner inlines it.
CREATE FUNCTION time_ordered_uuid() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    SELECT encode(
               set_bit(set_bit(
                   overlay(uuid_send(gen_random_uuid())
                           PLACING substring(int8send(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint)
                                             FROM 3)
                           FROM 1 FOR 6),
                   52, 1), 53, 1),  -- version 4 (0100) becomes 7 (0111); the variant bits stay
               'hex')::uuid
$$;

ALTER TABLE send_logs ALTER COLUMN id SET DEFAULT time_ordered_uuid();


-- 2. One row per (mailout, address), compared byte for byte. The same rows
-- are refused as before: equality is byte equality under every
-- deterministic collation. Only the index's order changes, to the "C"
-- collation, which compares with memcmp instead of strcoll. No query sorts
-- by this index. It is a unique index and no longer a constraint (a
-- constraint must use the column's collation), so ON CONFLICT names it by
-- its columns: ON CONFLICT (mailout_id, email COLLATE "C").
ALTER TABLE send_logs DROP CONSTRAINT send_logs_one_per_recipient;
CREATE UNIQUE INDEX send_logs_one_per_recipient ON send_logs (mailout_id, email COLLATE "C");


-- 3. The two foreign keys become triggers on the referenced tables. A
-- foreign key checks every inserted row on its own: a query and a row lock
-- per row, here a million checks of the same mailout and a lock on every
-- subscriber (which also writes every subscriber page to the WAL). That
-- was about half of the snapshot's time.
--
-- What a send_logs row refers to when it is written: the service writes
-- mailout_id and subscriber_id in exactly one place, the claim's snapshot
-- (store.snapshot_recipients), and never changes them afterwards (only the
-- triggers below set subscriber_id to NULL). There, both are right by
-- construction:
--   * mailout_id is the mailout the same transaction has just moved from
--     'ready' to 'sending'. That UPDATE holds the mailout's row lock until
--     commit, so a DELETE of the mailout waits for the claim, and then its
--     trigger below sees the new rows and deletes them.
--   * subscriber_id is the id of the subscriber row each ledger row is read
--     from, in the same statement. A subscriber deleted while a claim is
--     under way is handled by the lock described at section 4.
-- Rows inserted by hand are not checked against mailouts or subscribers
-- any more. Such a row is inert: a row whose mailout does not exist is never
-- sent, and take_batch treats a subscriber_id without a subscriber like
-- NULL (LEFT JOIN: skipped as 'subscriber is deleted').
ALTER TABLE send_logs DROP CONSTRAINT send_logs_mailout_id_fkey;
ALTER TABLE send_logs DROP CONSTRAINT send_logs_subscriber_id_fkey;

-- The functions run as the tables' owner, as the foreign keys' actions did,
-- so row-level security on send_logs never hides a row from them. (Nobody
-- needs EXECUTE on a trigger function for its trigger to fire.)

-- ON DELETE CASCADE: a mailout's ledger goes with it. (send_logs_one_per_recipient
-- finds a mailout's rows.) One statement for all the mailouts a DELETE removes.
CREATE FUNCTION send_logs_delete_with_mailouts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM send_logs;
    ELSE
        DELETE FROM send_logs WHERE mailout_id IN (SELECT id FROM gone);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER send_logs_delete_with_mailouts
    AFTER DELETE ON mailouts REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION send_logs_delete_with_mailouts();
-- A foreign key refused TRUNCATE mailouts unless send_logs went with it;
-- now send_logs goes with it.
CREATE TRIGGER send_logs_truncate_with_mailouts
    AFTER TRUNCATE ON mailouts
    FOR EACH STATEMENT EXECUTE FUNCTION send_logs_delete_with_mailouts();


-- 4. ON DELETE SET NULL: a deleted subscriber's rows stay, without the
-- subscriber. One UPDATE for all the subscribers a DELETE removes (the
-- foreign key ran one per subscriber, each a scan of send_logs, which has
-- no index on subscriber_id).
--
-- A claim under way (its snapshot not committed yet) may hold rows for a
-- subscriber deleted meanwhile, and this UPDATE cannot see them. The foreign
-- key's row locks made the two wait for each other; a lock on one advisory
-- key does it now: every claim takes it shared (trigger below, on the
-- UPDATE of the mailout from 'ready' to 'sending', so before its snapshot
-- begins), and this trigger takes it exclusive. So the UPDATE runs only once
-- no claim is under way, and, in READ COMMITTED, with a snapshot taken after
-- they committed. A claim that starts after the DELETE waits until the
-- deleting transaction commits, and then does not see the deleted subscriber.
-- Claims do not wait for one another; sends, unsubscribes and SES events
-- never wait on this lock.
-- The key is "amzn" + 1; db.upgrade uses "amzn".
CREATE FUNCTION send_logs_claim_lock() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1634564719);
    RETURN NULL;
END
$$;

CREATE TRIGGER send_logs_claim_lock
    AFTER UPDATE OF status ON mailouts
    FOR EACH ROW WHEN (OLD.status = 'ready' AND NEW.status = 'sending')
    EXECUTE FUNCTION send_logs_claim_lock();

CREATE FUNCTION send_logs_forget_subscribers() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1634564719);
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE send_logs SET subscriber_id = NULL WHERE subscriber_id IS NOT NULL;
    ELSE
        UPDATE send_logs SET subscriber_id = NULL WHERE subscriber_id IN (SELECT id FROM gone);
    END IF;
    RETURN NULL;
END
$$;

REVOKE EXECUTE ON FUNCTION send_logs_delete_with_mailouts(), send_logs_forget_subscribers() FROM PUBLIC;

CREATE TRIGGER send_logs_forget_subscribers
    AFTER DELETE ON subscribers REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION send_logs_forget_subscribers();
CREATE TRIGGER send_logs_forget_truncated_subscribers
    AFTER TRUNCATE ON subscribers
    FOR EACH STATEMENT EXECUTE FUNCTION send_logs_forget_subscribers();


-- 5. The foreign keys also refused to change a referenced id. Ids never
-- change: the ledger, SES events and the unsubscribe links all hold them.
CREATE FUNCTION refuse_id_change() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'the id of a row in % never changes', TG_TABLE_NAME
        USING ERRCODE = 'foreign_key_violation';
END
$$;

CREATE TRIGGER mailouts_id_never_changes
    BEFORE UPDATE OF id ON mailouts
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION refuse_id_change();
CREATE TRIGGER subscribers_id_never_changes
    BEFORE UPDATE OF id ON subscribers
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION refuse_id_change();
