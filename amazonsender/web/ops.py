"""What operators and tools ask of the service: /metrics, /openapi.json and /healthz."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify

from .. import metrics
from .pool import get_pool

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)

HEALTH_CHECK_SECONDS = 2.0
OPENAPI_DOCUMENT = Path(__file__).resolve().parent / "openapi.json"


@bp.get("/metrics")
def prometheus_metrics():
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi_document():
    return current_app.response_class(OPENAPI_DOCUMENT.read_bytes(), content_type="application/json")


@bp.get("/healthz")
def healthz():
    try:
        with get_pool().connection(timeout=HEALTH_CHECK_SECONDS) as conn:
            conn.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means "not healthy"
        log.warning("health check: database unreachable", exc_info=True)
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200
