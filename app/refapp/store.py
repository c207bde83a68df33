"""The store extension: the backend chosen by ``STORE``, one instance per app.

Each backend connects lazily, on first use in each process (after gunicorn forks).
"""

from __future__ import annotations

from flask import Flask, current_app

from .stores import Store, create_store


def init_app(app: Flask) -> Store:
    """Create the app's store from its config; views reach it through ``get_store()``."""
    store = create_store(app.config)
    app.extensions["store"] = store
    return store


def get_store() -> Store:
    """The current app's store."""
    return current_app.extensions["store"]
