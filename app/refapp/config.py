"""The app's settings: one DEFAULTS dict, overridable by ``APP_<KEY>`` environment variables."""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from flask import Config

from .stores import BACKENDS

ENV_PREFIX = "APP"

DEFAULTS: dict[str, Any] = {
    # Name sent in every response's X-Replica header: how the load generator proves
    # which replica answered. The hostname is only a fallback: starters set APP_REPLICA.
    "REPLICA": socket.gethostname(),
    # Which shared store backs the state endpoints (see refapp/stores/): redis,
    # memcached, postgres, or memory (per process, NOT shared: the anti-pattern).
    "STORE": "redis",
    # The shared store; a password, if any, goes in the URL.
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    # Connections per process; keep it >= gunicorn threads, or threads queue for one.
    "REDIS_POOL_SIZE": 16,
    # Seconds to wait for a free pooled connection before failing (never forever).
    "REDIS_POOL_TIMEOUT": 1.0,
    # Short timeouts and one retry: a dead store must cost a fast 503, not a hang.
    "REDIS_SOCKET_TIMEOUT": 0.5,
    "REDIS_CONNECT_TIMEOUT": 0.5,
    "REDIS_RETRIES": 1,
    # PING a pooled connection that was idle this many seconds before reusing it.
    "REDIS_HEALTH_CHECK_INTERVAL": 30,
    # memcached: one server as host:port. Timeouts in seconds; pymemcache's default is
    # to wait forever. Pool size per process: keep it >= gunicorn threads (pymemcache
    # fails at once, rather than waits, when every pooled connection is in use).
    "MEMCACHED_SERVER": "127.0.0.1:11211",
    "MEMCACHED_POOL_SIZE": 16,
    "MEMCACHED_CONNECT_TIMEOUT": 0.5,
    "MEMCACHED_TIMEOUT": 0.5,
    # postgres: a libpq DSN, password included if any; options given in it win over the
    # settings below. The schema must exist first: `python -m refapp.init_store`.
    "POSTGRES_DSN": "postgresql://hscale@127.0.0.1:5432/hscale",
    # Connections per process: min kept open, max >= gunicorn threads. replicas x
    # workers x max must stay below the server's max_connections (100 by default).
    "POSTGRES_POOL_MIN": 1,
    "POSTGRES_POOL_MAX": 4,
    # Seconds a request waits for a pooled connection; while the server is down every
    # request waits this long, then gets a 503.
    "POSTGRES_POOL_TIMEOUT": 1.0,
    # Whole seconds (libpq's unit; it treats anything below 2 as 2).
    "POSTGRES_CONNECT_TIMEOUT": 2,
    # Server-side cap on every statement (0, "no limit", is refused).
    "POSTGRES_STATEMENT_TIMEOUT_MS": 500,
    "KV_MAX_KEY_LEN": 64,
    "KV_MAX_VALUE_BYTES": 4096,
    "KV_PREFIX": "hscale:kv:",
    "COUNTER_KEY": "hscale:counter",
    # Per-user state for /session (key prefix in redis and memcached; limit on the
    # compact UTF-8 JSON of the session's data).
    "SESSION_PREFIX": "hscale:session:",
    "SESSION_MAX_BYTES": 4096,
    "WORK_MAX_MS": 1000,
    # Flask's own request body cap (413). 32 KiB, not 16: the largest allowed value,
    # sent fully \u-escaped (6 bytes per byte of control characters), still fits.
    "MAX_CONTENT_LENGTH": 32 * 1024,
}

# Numeric settings for which 0 is meaningful; every other number must be > 0.
_MAY_BE_ZERO = {
    "REDIS_RETRIES",
    "REDIS_HEALTH_CHECK_INTERVAL",
    "REDIS_POOL_TIMEOUT",
    "POSTGRES_POOL_MIN",
    "WORK_MAX_MS",
}
STORES = tuple(BACKENDS)  # one list of backends: stores/__init__.py


def restore_env_strings(config: Config, prefix: str = ENV_PREFIX) -> None:
    """Give string settings the raw text of their ``<prefix>_<KEY>`` variable.

    from_prefixed_env parses values as JSON, so APP_REPLICA=1.50 would become the
    float 1.5 (and then the header "1.5").
    """
    for key, default in DEFAULTS.items():
        raw = os.environ.get(f"{prefix}_{key}")
        if raw is not None and isinstance(default, str):
            config[key] = raw


def normalize(config: Config) -> None:
    """Coerce every known setting to its default's type; raise ValueError on bad values.

    Failing at startup beats a replica that serves 500s (or odd results) under load.
    """
    for key, default in DEFAULTS.items():
        config[key] = _coerce(key, config[key], default)
    replica = config["REPLICA"]
    # It becomes a header value: printable ASCII only, or every response would fail.
    if not (replica and replica.isascii() and replica.isprintable()):
        raise ValueError(f"REPLICA must be non-empty printable ASCII, got {replica!r}")
    if config["STORE"] not in STORES:
        raise ValueError(f"STORE must be one of {', '.join(STORES)}, got {config['STORE']!r}")
    parse_host_port("MEMCACHED_SERVER", config["MEMCACHED_SERVER"])
    if config["POSTGRES_POOL_MIN"] > config["POSTGRES_POOL_MAX"]:
        raise ValueError("POSTGRES_POOL_MIN must not exceed POSTGRES_POOL_MAX")


def parse_host_port(key: str, value: str) -> tuple[str, int]:
    """``host:port`` (``[v6addr]:port`` too) as a pair; ValueError naming ``key`` otherwise."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not (sep and host and re.fullmatch(r"[0-9]{1,5}", port) and 0 < int(port) < 65536):
        raise ValueError(f"{key} must be host:port, got {value!r}")
    return host, int(port)


def _coerce(key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {value!r}")
        return value
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise ValueError  # json gives true/1.5: neither is a valid count
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be {kind.__name__}, got {value!r}") from None
    if number < 0 or (number == 0 and key not in _MAY_BE_ZERO):
        raise ValueError(f"{key} is out of range: {value!r}")
    return number
