"""Redis: one blocking connection pool per process."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from .base import SessionRecord, dump_session, unavailable_on

# Any Redis failure (refused, timeout, pool exhausted, auth) means the shared state is
# unavailable right now: a retryable 503, bounded by the timeouts.
_outage = unavailable_on("redis", RedisError)


class RedisStore:
    """Counter, key-value and session operations on Redis; one instance per app.

    Sessions are hashes {data: <json>, version: <n>}, both written in one MULTI/EXEC.
    """

    name = "redis"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._client: redis.Redis | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        c = config
        self.url: str = c["REDIS_URL"]
        self.pool_size: int = c["REDIS_POOL_SIZE"]
        self.pool_timeout: float = c["REDIS_POOL_TIMEOUT"]
        self.socket_timeout: float = c["REDIS_SOCKET_TIMEOUT"]
        self.connect_timeout: float = c["REDIS_CONNECT_TIMEOUT"]
        self.retries: int = c["REDIS_RETRIES"]
        self.health_check_interval: int = c["REDIS_HEALTH_CHECK_INTERVAL"]
        self.counter_key: str = c["COUNTER_KEY"]
        self.kv_prefix: str = c["KV_PREFIX"]
        self.session_prefix: str = c["SESSION_PREFIX"]

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
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.connection_pool.disconnect()
            self._client = None

    @_outage
    def ping(self) -> bool:
        return bool(self.client.ping())

    def init_schema(self) -> None:
        self.ping()  # nothing to create: keys appear on first write

    @_outage
    def incr_counter(self) -> int:
        return int(self.client.incr(self.counter_key))

    @_outage
    def get_counter(self) -> int:
        return int(self.client.get(self.counter_key) or 0)

    @_outage
    def get(self, key: str) -> str | None:
        value = self.client.get(self.kv_prefix + key)
        return None if value is None else str(value)

    @_outage
    def set(self, key: str, value: str) -> None:
        self.client.set(self.kv_prefix + key, value)

    @_outage
    def get_session(self, user: str) -> SessionRecord | None:
        data, version = self.client.hmget(self.session_prefix + user, ["data", "version"])
        if data is None or version is None:
            return None
        return {"data": json.loads(data), "version": int(version)}

    @_outage
    def put_session(self, user: str, data: dict[str, Any]) -> int:
        key = self.session_prefix + user
        # One transaction, so a reader never sees new data with the old version. Like
        # INCR, a retry after a lost reply can bump the version twice: still monotonic.
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(key, "data", dump_session(data))
            pipe.hincrby(key, "version", 1)
            _, version = pipe.execute()
        return int(version)
