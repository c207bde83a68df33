"""The app's settings: one DEFAULTS dict, overridable by ``APP_<KEY>`` environment variables."""

from __future__ import annotations

import os
import socket
from typing import Any

from flask import Config

ENV_PREFIX = "APP"

DEFAULTS: dict[str, Any] = {
    # Name sent in every response's X-Replica header: how the load generator proves
    # which replica answered. The hostname is only a fallback: starters set APP_REPLICA.
    "REPLICA": socket.gethostname(),
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
    "KV_MAX_KEY_LEN": 64,
    "KV_MAX_VALUE_BYTES": 4096,
    "KV_PREFIX": "hscale:kv:",
    "COUNTER_KEY": "hscale:counter",
    "WORK_MAX_MS": 1000,
    # Flask's own request body cap (413). 32 KiB, not 16: the largest allowed value,
    # sent fully \u-escaped (6 bytes per byte of control characters), still fits.
    "MAX_CONTENT_LENGTH": 32 * 1024,
}

# Numeric settings for which 0 is meaningful; every other number must be > 0.
_MAY_BE_ZERO = {"REDIS_RETRIES", "REDIS_HEALTH_CHECK_INTERVAL", "REDIS_POOL_TIMEOUT", "WORK_MAX_MS"}


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
