"""Every SQL statement the service runs, with bound parameters only; this package's names are the store's API.

Functions take an open connection and run inside the caller's transaction;
the caller's `with pool.connection()` block decides when it commits. The
statements live in one module per concept: mailouts.py (mailout rows),
ledger.py (send_logs, one row per recipient), subscribers.py (the list),
events.py (SES events) and erasure.py (forgetting an address, the
suppression list). Callers use them through this package: `store.take_batch`.
"""

from .erasure import Erasure, begin_forgetting, forget_address, suppressed_hashes, suppression_key_ids
from .events import _RECORD_EVENT_SQL, EVENT_EFFECTS, _text_array, record_event
from .ledger import (
    Outcome,
    QueuePage,
    Recipient,
    count_by_status,
    count_sent,
    mark_in_doubt,
    queue_page,
    queue_progress,
    record_outcomes,
    reputation,
    sent_last_minute,
    start_queuing,
    storable,
    take_batch,
)
from .mailouts import (
    claim_for_resume,
    claim_mailout,
    create_mailout,
    finish_mailout,
    get_mailout,
    heartbeat,
    list_mailouts,
    mark_ready,
)
from .subscribers import (
    add_active_subscribers,
    count_active_subscribers,
    count_subscribers_by_status,
    get_subscriber,
    lock_subscriber_by_address,
    statuses_by_address,
    stream_subscribers,
    subscribers_by_email,
    unsubscribe,
)

__all__ = [
    "EVENT_EFFECTS",
    "Erasure",
    "Outcome",
    "QueuePage",
    "Recipient",
    "_RECORD_EVENT_SQL",
    "_text_array",
    "add_active_subscribers",
    "begin_forgetting",
    "claim_for_resume",
    "claim_mailout",
    "count_active_subscribers",
    "count_by_status",
    "count_sent",
    "count_subscribers_by_status",
    "create_mailout",
    "finish_mailout",
    "forget_address",
    "get_mailout",
    "get_subscriber",
    "heartbeat",
    "list_mailouts",
    "lock_subscriber_by_address",
    "mark_in_doubt",
    "mark_ready",
    "queue_page",
    "queue_progress",
    "record_event",
    "record_outcomes",
    "reputation",
    "sent_last_minute",
    "start_queuing",
    "statuses_by_address",
    "storable",
    "stream_subscribers",
    "subscribers_by_email",
    "suppressed_hashes",
    "suppression_key_ids",
    "take_batch",
    "unsubscribe",
]
