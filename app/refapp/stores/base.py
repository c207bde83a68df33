"""What every store backend provides, and the helpers they share."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, Protocol, TypedDict, TypeVar, runtime_checkable

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class StoreUnavailable(Exception):
    """The shared store cannot answer now (down, unreachable, timed out, pool exhausted).

    Backends raise only this for an outage, whatever their client library raised, so
    the app answers every backend's outage with the same 503 (see errors.py).
    """

    def __init__(self, backend: str, cause: BaseException) -> None:
        super().__init__(f"{backend}: {type(cause).__name__}: {cause}")
        self.backend = backend


class SessionRecord(TypedDict):
    data: dict[str, Any]
    # Incremented by the store on every write (1 after the first), so a client can tell
    # a stale read from a fresh one whichever replica served it.
    version: int


@runtime_checkable
class Store(Protocol):
    """The operations the endpoints use; every method may raise StoreUnavailable."""

    name: str

    def ping(self) -> bool: ...

    def incr_counter(self) -> int:
        """Atomically add 1 to the counter (starting from 0) and return the new value."""
        ...

    def get_counter(self) -> int:
        """The counter's value (0 before the first increment)."""
        ...

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def get_session(self, user: str) -> SessionRecord | None: ...

    def put_session(self, user: str, data: dict[str, Any]) -> int:
        """Replace the user's session data; return its new version, bumped atomically."""
        ...

    def init_schema(self) -> None:
        """Create what the store needs before replicas start (idempotent, run once)."""
        ...

    def close(self) -> None:
        """Drop this process's connections (the next use opens new ones)."""
        ...


def unavailable_on(
    backend: str, *errors: type[BaseException]
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a store method so that the client library's ``errors`` become
    StoreUnavailable (an unhandled library error would be a 500)."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(*args, **kwargs)
            except errors as e:
                raise StoreUnavailable(backend, e) from e

        return wrapper

    return decorate


def dump_session(data: dict[str, Any]) -> str:
    # Compact and UTF-8 as-is: the form whose size SESSION_MAX_BYTES limits.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class PerProcess(Generic[T]):
    """A client made on first use in each process, never inherited across fork.

    A pool created before gunicorn forks would hand the same sockets to every worker.
    """

    def __init__(self, make: Callable[[], T], close: Callable[[T], None]) -> None:
        self._make = make
        self._close = close
        self._value: T | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    @property
    def created(self) -> bool:
        return self._value is not None and self._pid == os.getpid()

    def get(self) -> T:
        pid = os.getpid()
        value = self._value
        if value is None or self._pid != pid:
            with self._lock:
                if self._value is None or self._pid != pid:
                    self._value = self._make()
                    self._pid = pid
                value = self._value
        return value

    def close(self) -> None:
        with self._lock:
            # A parent's client is left alone: closing it here would close the parent's
            # sockets too.
            if self._value is not None and self._pid == os.getpid():
                self._close(self._value)
            self._value = None
