"""AmazonSender: sends one newsletter to every active subscriber through
Amazon SES, exactly once, and keeps the list clean.

The HTTP service lives in `amazonsender.web`, the only package that imports
Flask. `from amazonsender import create_app` still works: the name is looked
up there on first use, so that the command line and the sender, which import
this package, never load Flask.
"""

from __future__ import annotations

from .config import Settings  # noqa: F401 - names this package has always offered
from .logs import configure_logging  # noqa: F401

# Names this package hands on from amazonsender.web, loaded when first asked for.
_FROM_WEB = ("create_app", "MAX_BODY_BYTES")


def __getattr__(name: str):
    if name in _FROM_WEB:
        from . import web

        return getattr(web, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
