"""A missing, stopped or hung store gives a fast 503 JSON (never a 500), on every shared
backend, and store-free endpoints keep working."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from refapp import create_app
from storekit import SHARED_BACKENDS
from werkzeug.test import TestResponse

# Well above the defaults' worst case: one 0.5 s timeout plus a reconnect (redis,
# memcached), or the 1 s wait for a pooled connection (postgres).
FAST_S = 2.0
# Keeps the postgres cases quick where a test makes many requests to a dead store.
QUICK = {"POSTGRES_POOL_TIMEOUT": 0.3}

USER = {"X-User": "u"}
STORE_REQUESTS: list[tuple[str, str, dict]] = [
    ("POST", "/counter", {}),
    ("GET", "/counter", {}),
    ("GET", "/kv/k", {}),
    ("PUT", "/kv/k", {"json": {"value": "v"}}),
    ("GET", "/session", {"headers": USER}),
    ("POST", "/session", {"headers": USER, "json": {"data": {"a": 1}}}),
    ("GET", "/readyz", {}),
]


def settings_for(store: str, port: int) -> dict[str, Any]:
    """Settings that point ``store`` at 127.0.0.1:port."""
    return {
        "redis": {"REDIS_URL": f"redis://127.0.0.1:{port}/0"},
        "memcached": {"MEMCACHED_SERVER": f"127.0.0.1:{port}"},
        "postgres": {"POSTGRES_DSN": f"postgresql://hscale@127.0.0.1:{port}/hscale"},
    }[store]


def make_app(store: str, settings: dict[str, Any]) -> Flask:
    return create_app({"TESTING": True, "REPLICA": "down", "STORE": store, **settings})


def timed(client: FlaskClient, method: str, path: str, **kwargs) -> tuple[TestResponse, float]:
    start = time.monotonic()
    r = client.open(path, method=method, **kwargs)
    return r, time.monotonic() - start


def assert_store_unavailable(client: FlaskClient) -> None:
    for method, path, kwargs in STORE_REQUESTS:
        r, elapsed = timed(client, method, path, **kwargs)
        assert r.status_code == 503, (method, path, r.get_data(as_text=True))
        assert r.get_json() == {"error": "store unavailable", "status": 503}
        assert r.headers["X-Replica"] == "down"
        assert elapsed < FAST_S, (method, path, elapsed)


def assert_store_free_endpoints_ok(client: FlaskClient) -> None:
    assert client.get("/json").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/work?ms=1").status_code == 200
    assert client.get("/kv/bad%20key").status_code == 400  # input is checked before the store


@pytest.mark.parametrize("store", SHARED_BACKENDS)
def test_nothing_listening(store: str, unused_port: int) -> None:
    app = make_app(store, {**settings_for(store, unused_port), **QUICK})
    assert_store_unavailable(app.test_client())
    assert_store_free_endpoints_ok(app.test_client())
    app.extensions["store"].close()


def start_private(request: pytest.FixtureRequest, store: str) -> tuple[Any, dict[str, Any]]:
    """A private server for ``store`` (to stop it), and the settings that reach it."""
    server = request.getfixturevalue(f"{store}_server_factory")()
    settings = {
        "redis": lambda: {"REDIS_URL": server.url},
        "memcached": lambda: {"MEMCACHED_SERVER": server.server},
        "postgres": lambda: {"POSTGRES_DSN": server.dsn, **QUICK},
    }[store]()
    return server, settings


@pytest.mark.parametrize("store", SHARED_BACKENDS)
def test_store_stopped_midway(request: pytest.FixtureRequest, store: str) -> None:
    server, settings = start_private(request, store)
    app = make_app(store, settings)
    app.extensions["store"].init_schema()  # what init_store does before replicas start
    client = app.test_client()
    assert client.post("/counter").get_json() == {"value": 1}  # pooled connection is open
    assert client.get("/readyz").status_code == 200

    server.stop()
    assert_store_unavailable(client)
    assert_store_free_endpoints_ok(client)
    app.extensions["store"].close()


def test_postgres_pool_recovers_after_restart(postgres_server_factory) -> None:
    server = postgres_server_factory()
    app = make_app("postgres", {"POSTGRES_DSN": server.dsn})
    app.extensions["store"].init_schema()
    client = app.test_client()
    assert client.post("/counter").get_json() == {"value": 1}
    server.stop()
    assert client.post("/counter").status_code == 503
    server.start()  # same port, same data
    # Stale pooled connections fail once each; the pool then reconnects on demand
    # rather than after psycopg_pool's default backoff of up to minutes.
    deadline = time.monotonic() + 5
    while (r := client.post("/counter")).status_code != 200 and time.monotonic() < deadline:
        assert r.status_code == 503
    assert r.status_code == 200 and r.get_json()["value"] >= 2
    app.extensions["store"].close()


@pytest.fixture
def hung_store() -> Iterator[int]:
    """A port that completes TCP handshakes (kernel backlog) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


# The bound each backend's defaults put on a store that accepts connections but never
# answers: redis and memcached time out reading (0.5 s); postgres waits for a pooled
# connection (1 s) while the connect attempt itself hangs in the background.
HUNG_BOUNDS = {"redis": (0.4, 1.5), "memcached": (0.4, 1.5), "postgres": (0.9, 1.9)}


@pytest.mark.parametrize("store", SHARED_BACKENDS)
def test_hung_store_times_out_fast(store: str, hung_store: int) -> None:
    app = make_app(store, settings_for(store, hung_store))
    client = app.test_client()
    low, high = HUNG_BOUNDS[store]
    for method, path in [("POST", "/counter"), ("GET", "/readyz")]:
        r, elapsed = timed(client, method, path)
        assert r.status_code == 503
        assert r.get_json() == {"error": "store unavailable", "status": 503}
        # Bounded by the configured timeouts, not a client library's (long) defaults.
        assert low <= elapsed < high, elapsed
    assert client.get("/healthz").status_code == 200
    app.extensions["store"].close()


@pytest.mark.parametrize("store", ["memcached", "postgres"])
def test_exhausted_pool_is_503_not_500(request: pytest.FixtureRequest, store: str) -> None:
    if store == "memcached":
        server = request.getfixturevalue("memcached_server").server
        app = make_app(store, {"MEMCACHED_SERVER": server, "MEMCACHED_POOL_SIZE": 1})
        pool = app.extensions["store"].client.client_pool
        held, release = pool.get(), pool.release
    else:
        dsn = request.getfixturevalue("postgres_schema")
        app = make_app(store, {"POSTGRES_DSN": dsn, "POSTGRES_POOL_MAX": 1, **QUICK})
        pool = app.extensions["store"].pool
        held, release = pool.getconn(), pool.putconn
    try:  # the only connection is in use
        r, elapsed = timed(app.test_client(), "GET", "/readyz")
        assert (r.status_code, r.get_json()["error"]) == (503, "store unavailable")
        assert elapsed < FAST_S
    finally:
        release(held)
    assert app.test_client().get("/readyz").status_code == 200
    app.extensions["store"].close()
