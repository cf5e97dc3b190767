"""Work a request starts and leaves running after its answer: a send, or a Notion import and its send."""

from __future__ import annotations

import contextvars
import threading


def run_in_background(app, name: str, work) -> threading.Thread:
    """`work()` in a daemon thread of this worker process, kept in
    app.extensions["background_sends"] (tests join them). A copy of the
    request's context carries its request id into the logs."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(work,), name=name, daemon=True)
    running = [t for t in app.extensions.get("background_sends", []) if t.is_alive()]
    app.extensions["background_sends"] = [*running, thread]
    thread.start()
    return thread
