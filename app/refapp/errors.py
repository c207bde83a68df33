"""Every error is JSON ``{"error": "<short message>", "status": <code>}``, never an HTML page."""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException

from .stores import StoreUnavailable

# Under load a dead store fails every request: log it at most this often per process.
_STORE_LOG_INTERVAL_S = 10.0
_last_store_log = float("-inf")


def error_response(status: int, message: str) -> Response:
    response = jsonify(error=message, status=status)
    response.status_code = status
    return response


def _http_error(e: HTTPException) -> Response | HTTPException:
    if e.code is None or e.code < 400:
        return e  # not an error (e.g. a routing redirect): let Flask answer it
    # Werkzeug's default descriptions are long sentences: use our own message when a
    # view gave one, else the short status name ("not found", "method not allowed").
    message = e.description if e.description != type(e).description else (e.name or "").lower()
    response = error_response(e.code, message or "error")
    for name, value in e.get_headers():  # keeps e.g. the Allow header of a 405
        if name.lower() != "content-type":
            response.headers.add(name, value)
    return response


def _store_error(e: StoreUnavailable) -> Response:
    # Every backend turns its client library's failures (refused, timeout, pool
    # exhausted, auth) into StoreUnavailable: the shared state is unavailable right now,
    # a retryable 503 rather than a 500, and bounded by the backend's timeouts.
    global _last_store_log
    now = time.monotonic()
    if now - _last_store_log >= _STORE_LOG_INTERVAL_S:
        _last_store_log = now
        current_app.logger.warning("store unavailable: %s", e)
    return error_response(503, "store unavailable")


def register_error_handlers(app: Flask) -> None:
    # HTTPException also catches unhandled exceptions, which Flask wraps in a 500.
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(StoreUnavailable, _store_error)
