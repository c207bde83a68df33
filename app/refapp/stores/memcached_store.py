"""Memcached through pymemcache: one connection pool per process, to one server.

memcached is a cache: under memory pressure it evicts keys, counter and sessions
included. The values here are tiny, but a benchmark that must not lose state should run
it with ``-M`` (refuse writes rather than evict).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheError

from ..config import parse_host_port
from .base import PerProcess, SessionRecord, StoreUnavailable, dump_session, unavailable_on

# pymemcache raises socket errors (refused, reset, timeout) as the OSErrors they are,
# protocol and server trouble as MemcacheError, and a pool with every connection in use
# as RuntimeError("Too many objects"), at once rather than after a wait.
_outage = unavailable_on("memcached", MemcacheError, OSError, RuntimeError)
# Compare-and-set rounds before a write counts as failed; per-user sessions and one
# counter only race under pathological load.
_CAS_TRIES = 50


class MemcachedStore:
    """Counter, key-value and session operations on memcached.

    The counter is memcached's atomic ``incr``; a session is ``b"<version>\\n<json>"``,
    replaced by gets/cas so that two writers never get the same version.
    """

    name = "memcached"

    def __init__(self, config: Mapping[str, Any]) -> None:
        c = config
        self.server = parse_host_port("MEMCACHED_SERVER", c["MEMCACHED_SERVER"])
        self.pool_size: int = c["MEMCACHED_POOL_SIZE"]
        self.connect_timeout: float = c["MEMCACHED_CONNECT_TIMEOUT"]
        self.timeout: float = c["MEMCACHED_TIMEOUT"]
        self.counter_key: str = c["COUNTER_KEY"]
        self.kv_prefix: str = c["KV_PREFIX"]
        self.session_prefix: str = c["SESSION_PREFIX"]
        self._client = PerProcess(self._make_client, PooledClient.close)

    @property
    def client(self) -> PooledClient:
        return self._client.get()

    def _make_client(self) -> PooledClient:
        return PooledClient(
            self.server,
            connect_timeout=self.connect_timeout,
            timeout=self.timeout,
            no_delay=True,
            max_pool_size=self.pool_size,
            # pymemcache's default sends set/add without waiting for the reply: a failed
            # write would look like a success, and a read on another connection could
            # miss it.
            default_noreply=False,
        )

    def close(self) -> None:
        self._client.close()

    @_outage
    def ping(self) -> bool:
        return bool(self.client.version())

    def init_schema(self) -> None:
        self.ping()  # nothing to create

    @_outage
    def incr_counter(self) -> int:
        client = self.client
        for _ in range(_CAS_TRIES):
            value = client.incr(self.counter_key, 1, noreply=False)
            if value is not None:
                return int(value)
            # No counter yet. add() is atomic: of racing first requests one creates "0",
            # the others' add fails harmlessly, and all of them then incr it.
            client.add(self.counter_key, b"0", noreply=False)
        raise StoreUnavailable("memcached", RuntimeError("the counter key keeps vanishing"))

    @_outage
    def get_counter(self) -> int:
        value = self.client.get(self.counter_key)
        return 0 if value is None else int(value)

    @_outage
    def get(self, key: str) -> str | None:
        value = self.client.get(self.kv_prefix + key)
        return None if value is None else value.decode("utf-8")

    @_outage
    def set(self, key: str, value: str) -> None:
        self.client.set(self.kv_prefix + key, value.encode("utf-8"), noreply=False)

    @_outage
    def get_session(self, user: str) -> SessionRecord | None:
        raw = self.client.get(self.session_prefix + user)
        return None if raw is None else _parse_session(raw)

    @_outage
    def put_session(self, user: str, data: dict[str, Any]) -> int:
        client, key = self.client, self.session_prefix + user
        body = dump_session(data).encode("utf-8")
        for _ in range(_CAS_TRIES):
            raw, token = client.gets(key)
            if raw is None:
                if client.add(key, b"1\n" + body, noreply=False):
                    return 1
                continue  # another writer created it first: cas over theirs
            version = _parse_session(raw)["version"] + 1
            # None (the key vanished) or False (someone wrote in between): go round again.
            if client.cas(key, b"%d\n%s" % (version, body), token, noreply=False):
                return version
        raise StoreUnavailable("memcached", RuntimeError(f"session {user!r}: cas kept failing"))


def _parse_session(raw: bytes) -> SessionRecord:
    version, _, body = raw.partition(b"\n")
    return {"data": json.loads(body), "version": int(version)}
