-- Why a mailout's last run stopped, and when it resumes by itself (issue 14).
--
-- stop_reason is a small fixed vocabulary (sender/stop.py, StopReason, says
-- what each word means and which ones resume by themselves); NULL while a run
-- owns the mailout, once it is 'sent', and for mailouts stopped before this
-- column existed (those never resume by themselves).
-- auto_resume_attempts counts the automatic resumes after a stop that heals
-- (throttled, ses_unavailable, database_unavailable) since the last resume by
-- hand; next_resume_at is when the next one is due (the backoff).
ALTER TABLE mailouts
    ADD COLUMN stop_reason text,
    ADD COLUMN auto_resume_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN next_resume_at timestamptz;

ALTER TABLE mailouts
    ADD CONSTRAINT mailouts_stop_reason_known CHECK (
        stop_reason IN ('shutdown', 'throttled', 'ses_unavailable', 'database_unavailable', 'guard', 'operator',
                        'account', 'circuit_breaker', 'unwritable', 'internal_error')
    );
