"""A missing, stopped or hung store gives a fast 503 JSON, and store-free endpoints keep working."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from refapp import create_app
from werkzeug.test import TestResponse

FAST_S = 2.0  # well above the defaults' worst case (one 0.5 s timeout plus a reconnect)

STORE_REQUESTS: list[tuple[str, str, dict]] = [
    ("POST", "/counter", {}),
    ("GET", "/kv/k", {}),
    ("PUT", "/kv/k", {"json": {"value": "v"}}),
    ("GET", "/readyz", {}),
]


def make_app(url: str) -> Flask:
    return create_app({"TESTING": True, "REDIS_URL": url, "REPLICA": "down"})


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


def test_nothing_listening(unused_port: int) -> None:
    client = make_app(f"redis://127.0.0.1:{unused_port}/0").test_client()
    assert_store_unavailable(client)
    assert_store_free_endpoints_ok(client)


def test_store_stopped_midway(redis_server_factory: Callable) -> None:
    server = redis_server_factory()
    app = make_app(server.url)
    client = app.test_client()
    assert client.post("/counter").get_json() == {"value": 1}  # pooled connection is open
    assert client.get("/readyz").status_code == 200

    server.stop()
    assert_store_unavailable(client)
    assert_store_free_endpoints_ok(client)
    app.extensions["store"].close()


@pytest.fixture
def hung_store() -> Iterator[int]:
    """A port that completes TCP handshakes (kernel backlog) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


def test_hung_store_times_out_fast(hung_store: int) -> None:
    client = make_app(f"redis://127.0.0.1:{hung_store}/0").test_client()
    for method, path in [("POST", "/counter"), ("GET", "/readyz")]:
        r, elapsed = timed(client, method, path)
        assert r.status_code == 503
        assert r.get_json() == {"error": "store unavailable", "status": 503}
        # Bounded by the 0.5 s socket timeout, not redis-py's 5 s default.
        assert 0.4 <= elapsed < 1.5, elapsed
    assert client.get("/healthz").status_code == 200
