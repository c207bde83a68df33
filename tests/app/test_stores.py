"""The store contract, run against every backend on a real server."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from refapp.stores import Store
from storekit import Backend

THREADS, PER_THREAD = 8, 200


def run_threads(work: Callable[[], list[Any]], threads: int = THREADS) -> list[Any]:
    """Run ``work`` on ``threads`` threads at once; every result, or the first error."""
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def target() -> None:
        try:
            start.wait()
            out = work()
            with lock:
                results.extend(out)
        except BaseException as e:  # re-raised below, in the main thread
            errors.append(e)

    workers = [threading.Thread(target=target) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.make_app().extensions["store"]


def test_is_a_store(store: Store, backend: Backend) -> None:
    assert isinstance(store, Store)
    assert store.name == backend.name
    assert store.ping() is True


def test_counter_is_atomic_under_threads(store: Store) -> None:
    assert store.get_counter() == 0
    seen = run_threads(lambda: [store.incr_counter() for _ in range(PER_THREAD)])
    # Every increment got its own value: nothing lost, nothing duplicated.
    assert sorted(seen) == list(range(1, THREADS * PER_THREAD + 1))
    assert store.get_counter() == THREADS * PER_THREAD


def test_get_set(store: Store) -> None:
    assert store.get("k") is None
    store.set("k", "v1")
    assert store.get("k") == "v1"
    store.set("k", "")
    assert store.get("k") == ""
    text = "é\U0001f600 \x01" * 100
    store.set("k:2", text)
    assert store.get("k:2") == text
    assert store.get("k") == ""


def test_session_versions(store: Store) -> None:
    assert store.get_session("alice") is None
    assert store.put_session("alice", {"cart": ["a"], "n": 1.5, "ok": None}) == 1
    assert store.get_session("alice") == {
        "data": {"cart": ["a"], "n": 1.5, "ok": None},
        "version": 1,
    }
    assert store.put_session("alice", {"cart": []}) == 2
    assert store.get_session("alice") == {"data": {"cart": []}, "version": 2}
    assert store.get_session("bob") is None  # per user
    assert store.put_session("bob", {}) == 1
    assert store.get_session("bob") == {"data": {}, "version": 1}


def test_session_versions_are_atomic_under_threads(store: Store) -> None:
    per_thread = 25
    versions = run_threads(lambda: [store.put_session("hot", {"i": i}) for i in range(per_thread)])
    # No two writes got the same version, and the last is the number of writes.
    assert sorted(versions) == list(range(1, THREADS * per_thread + 1))
    found = store.get_session("hot")
    assert found is not None and found["version"] == THREADS * per_thread


def test_close_then_reuse(store: Store) -> None:
    store.incr_counter()
    store.close()
    assert store.incr_counter() == 2  # a new connection, the same state
    store.close()
    store.close()  # idempotent


def test_init_schema_is_idempotent(store: Store) -> None:
    store.set("k", "kept")
    store.init_schema()
    store.init_schema()
    assert store.get("k") == "kept"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_each_forked_process_gets_its_own_client(backend: Backend) -> None:
    store = backend.make_app().extensions["store"]
    assert store.incr_counter() == 1  # the parent's client (pool) now exists
    pid = os.fork()
    if pid == 0:  # child: like a gunicorn worker forked after the app was built
        code = 1
        try:
            # memory: the child's copy; shared stores: the same counter, new sockets.
            code = 0 if store.incr_counter() == 2 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connections still work; only a shared store saw the child's write.
    assert store.incr_counter() == (2 if backend.name == "memory" else 3)
