"""The shared data store: a Flask extension around one Redis connection pool per process."""

from __future__ import annotations

import os
import threading

import redis
from flask import Flask, current_app
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry


class RedisStore:
    """Counter and key-value operations on Redis; one instance per app.

    Use ``RedisStore(app)`` or ``RedisStore().init_app(app)``; views reach it through
    ``get_store()`` (it is registered as ``app.extensions["store"]``).
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._client: redis.Redis | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        c = app.config
        self.url: str = c["REDIS_URL"]
        self.pool_size: int = c["REDIS_POOL_SIZE"]
        self.pool_timeout: float = c["REDIS_POOL_TIMEOUT"]
        self.socket_timeout: float = c["REDIS_SOCKET_TIMEOUT"]
        self.connect_timeout: float = c["REDIS_CONNECT_TIMEOUT"]
        self.retries: int = c["REDIS_RETRIES"]
        self.health_check_interval: int = c["REDIS_HEALTH_CHECK_INTERVAL"]
        self.counter_key: str = c["COUNTER_KEY"]
        self.kv_prefix: str = c["KV_PREFIX"]
        app.extensions["store"] = self

    @property
    def client(self) -> redis.Redis:
        # Created on first use in each process, not at import or in create_app: a pool
        # made before gunicorn forks would hand the same sockets to every worker.
        pid = os.getpid()
        if self._client is None or self._pid != pid:
            with self._lock:
                if self._client is None or self._pid != pid:
                    self._client = redis.Redis(connection_pool=self._make_pool())
                    self._pid = pid
        return self._client

    def _make_pool(self) -> redis.BlockingConnectionPool:
        # Every knob is set here because redis-py's defaults have moved between releases
        # (8.x: RESP3, 5 s timeouts, 10 retries); options in the URL's query still win.
        return redis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.pool_size,
            timeout=self.pool_timeout,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.connect_timeout,
            socket_keepalive=True,
            # Retry only when the connection failed (refused, reset, closed while idle in
            # the pool), never on a timeout: the command may then have run, and INCR is
            # not idempotent. This also bounds a hung store at about one timeout.
            retry=Retry(
                ExponentialBackoff(cap=0.05, base=0.01), self.retries, (RedisConnectionError,)
            ),
            health_check_interval=self.health_check_interval,
            # RESP2: plain request/response with no HELLO handshake or push messages,
            # understood by every Redis version.
            protocol=2,
            decode_responses=True,
            encoding="utf-8",
        )

    def close(self) -> None:
        """Drop this process's connections (the next use opens new ones)."""
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.connection_pool.disconnect()
            self._client = None

    def ping(self) -> bool:
        return bool(self.client.ping())

    def incr_counter(self) -> int:
        return int(self.client.incr(self.counter_key))

    def get(self, key: str) -> str | None:
        value = self.client.get(self.kv_prefix + key)
        return None if value is None else str(value)

    def set(self, key: str, value: str) -> None:
        self.client.set(self.kv_prefix + key, value)


def get_store() -> RedisStore:
    """The current app's store."""
    return current_app.extensions["store"]
