"""Sends a mailout to every active subscriber exactly once: no Flask in here.

The webhook, the command line and the tests all call `claim_mailout` (or
`resume_mailout`) and then `send_claimed_mailout` with a connection pool and
a transport (transport.Transport). The package, by concept:

- claim.py:      claim and resume, and the `Claim` a run sends from;
- preflight.py:  what is checked before a claim or a resume (content, SES account);
- run.py:        the run loop: read ahead, hand out SES calls, ask the guard;
- ahead.py:      the rows read and not yet sent, cut into calls;
- flights.py:    the calls in flight (SEND_CONCURRENCY, a number or auto);
- queueing.py:   the snapshot after the claim, page by page from a cursor;
- sending.py:    one SES call: mark its rows, send with retries, record;
- attempts.py:   what a failed send leads to (retry policy, outcome of each ErrorKind);
- pacer.py:      how fast emails go, and how many recipients one call carries;
- lease.py:      the heartbeat, and whether the mailout is still the run's;
- guard.py:      the reputation guard and the circuit breaker;
- stop.py:       the StopSignal that pauses runs, the Halt a run stops on, its StopReason;
- watch.py:      automatic resume: what resumes by itself, when, and the watcher;
- pause.py:      a person's pause;
- test_sends.py: test sends, outside the ledger;
- unconfirmed.py: in-doubt rows with no SES event, sent again on request;
- errors.py:     why a mailout cannot be claimed, resumed or recorded.

Exactly once, in three steps:
1. the claim moves the mailout `ready -> sending` with a conditional UPDATE;
   after the webhook's answer its run queues one ledger row per subscriber
   active at the claim, in pages that commit their rows and a cursor together;
2. right before the SES call that carries them, its rows are marked
   'sending' and committed;
3. after SES answers, each row gets its outcome (message id or error).
A recipient is therefore never sent twice: a row only goes out from 'queued',
and a row found 'sending' after a crash is in doubt and never sent again.
"""

from __future__ import annotations

# The package's API, from the modules that own each part.
from .attempts import (  # noqa: F401
    BACKOFF_BASE_SECONDS,
    BACKOFF_MAX_SECONDS,
    THROTTLE_ATTEMPTS,
    TRANSIENT_ATTEMPTS,
    backoff_seconds,
    cannot_write,
)
from .claim import Claim, claim_mailout, resume_mailout  # noqa: F401
from .errors import (  # noqa: F401
    CANNOT_START,
    AccountCannotSend,
    DatabaseUnavailable,
    MailoutInvalid,
    MailoutNotFound,
    MailoutNotPausable,
    MailoutNotReady,
    MailoutNotResumable,
    NoSendEvents,
    NothingToResend,
    RunnerAlive,
    SesUnavailable,
)
from .guard import reputation_problem  # noqa: F401
from .pause import pause_mailout  # noqa: F401
from .pacer import (  # noqa: F401
    BULK_CALLS_PER_SECOND,
    CATCH_UP,
    CATCH_UP_SECONDS,
    PACE_MARGIN,
    SES_BULK_MAX_RECIPIENTS,
    THROTTLE_MAX_SLOWDOWN,
    THROTTLE_SLOWDOWN_SECONDS,
    Pacer,
    _capacity,
    recipients_per_call,
)
from .preflight import check_mailout_can_start, pace_for, pace_resumed, ready_mailout, sendable  # noqa: F401
from .run import Summary, send_claimed_mailout, send_in_thread  # noqa: F401
from .unconfirmed import resend_unconfirmed  # noqa: F401
from .stop import StopReason, StopSignal, process_stop, request_stop  # noqa: F401
from .test_sends import (  # noqa: F401
    TEST_SUBJECT_PREFIX,
    is_one_test_address,
    send_test,
    send_test_content,
    test_key,
)
from ..links import UnsubscribeTokens  # noqa: F401

# Today's name for the process's stop signal (the tests clear it between runs).
stop_requested = process_stop
