"""Liveness and readiness probes."""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, current_app

from .store import get_store

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, Any]:
    # Liveness only: never touches the store, so a store outage does not get
    # healthy replicas restarted.
    return {"status": "ok", "replica": current_app.config["REPLICA"], "pid": os.getpid()}


@bp.get("/readyz")
def readyz() -> dict[str, Any]:
    # A failed ping raises StoreUnavailable, which the app answers with a 503.
    get_store().ping()
    return {"status": "ready"}
