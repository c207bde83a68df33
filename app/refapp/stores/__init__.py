"""Store backends behind one interface (base.Store); ``STORE`` picks one per app.

Backends are imported only when chosen: a redis replica never loads psycopg.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from .base import SessionRecord, Store, StoreUnavailable

__all__ = ["BACKENDS", "SessionRecord", "Store", "StoreUnavailable", "create_store"]

# STORE value -> "module:class" in this package; config.STORES is its keys, and hscale's
# registry (hscale/stores.py) names the same stores (a test checks).
BACKENDS = {
    "redis": "redis_store:RedisStore",
    "memcached": "memcached_store:MemcachedStore",
    "postgres": "postgres_store:PostgresStore",
    "memory": "memory_store:MemoryStore",
}


def create_store(config: Mapping[str, Any]) -> Store:
    """The backend named by ``config["STORE"]``, configured but not yet connected."""
    module, cls = BACKENDS[config["STORE"]].split(":")
    backend = getattr(importlib.import_module(f".{module}", __name__), cls)
    return backend(config)
