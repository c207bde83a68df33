"""Memory: a dict in each process. THE ANTI-PATTERN this benchmark exists to expose."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from .base import SessionRecord, dump_session


class MemoryStore:
    """State kept in this process only: NOT shared between replicas, nor between the
    gunicorn workers of one replica, nor kept across a restart.

    It scales perfectly because it shares nothing, and is wrong for that reason: each
    replica counts on its own and a user's session exists only on the replica that
    wrote it (unless the proxy pins users to replicas with sticky sessions). It is here
    as the baseline that shows what sharing state costs, never as a deployable store.
    """

    name = "memory"

    def __init__(self, config: Mapping[str, Any]) -> None:
        del config  # nothing to connect to
        self._lock = threading.Lock()  # gthread workers run views on several threads
        self._counter = 0
        self._kv: dict[str, str] = {}
        # Sessions as JSON text, so no caller can mutate stored state in place.
        self._sessions: dict[str, tuple[str, int]] = {}

    def ping(self) -> bool:
        return True

    def init_schema(self) -> None:
        pass  # nothing outside this process to prepare

    def incr_counter(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def get_counter(self) -> int:
        return self._counter

    def get(self, key: str) -> str | None:
        return self._kv.get(key)

    def set(self, key: str, value: str) -> None:
        with self._lock:
            self._kv[key] = value

    def get_session(self, user: str) -> SessionRecord | None:
        found = self._sessions.get(user)
        if found is None:
            return None
        text, version = found
        return {"data": json.loads(text), "version": version}

    def put_session(self, user: str, data: dict[str, Any]) -> int:
        text = dump_session(data)
        with self._lock:
            version = self._sessions.get(user, ("", 0))[1] + 1
            self._sessions[user] = (text, version)
        return version

    def close(self) -> None:
        pass
