"""Fixtures for the reference app's tests: apps on the session's real stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from refapp import create_app
from storekit import BACKENDS, REPLICA, SHARED_BACKENDS, Backend


@pytest.fixture
def redis_db(redis_server) -> Iterator[redis.Redis]:
    """A direct client on the test Redis, with the database flushed before the test."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def app(redis_server, redis_db: redis.Redis) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url, "REPLICA": REPLICA})
    yield app
    app.extensions["store"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def postgres_schema(postgres_server) -> str:
    """The session PostgreSQL with the app's schema made once, as init_store does."""
    app = create_app({"STORE": "postgres", "POSTGRES_DSN": postgres_server.dsn})
    app.extensions["store"].init_schema()
    app.extensions["store"].close()
    return postgres_server.dsn


def _settings(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    """Settings pointing at the session's server for ``name``, emptied first.

    Servers are looked up lazily, so selecting one backend starts only its server.
    """
    if name == "redis":
        request.getfixturevalue("redis_db")  # flushes
        return {"REDIS_URL": request.getfixturevalue("redis_server").url}
    if name == "memcached":
        from pymemcache.client.base import Client

        server = request.getfixturevalue("memcached_server")
        flusher = Client(("127.0.0.1", server.port), timeout=2)
        flusher.flush_all(noreply=False)
        flusher.close()
        return {"MEMCACHED_SERVER": server.server}
    if name == "postgres":
        dsn = request.getfixturevalue("postgres_schema")
        request.getfixturevalue("postgres_server").sql("TRUNCATE counter, kv, sessions")
        return {"POSTGRES_DSN": dsn}
    return {}  # memory: every app starts empty


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each store backend in turn, on a clean real server (memory: in this process)."""
    b = Backend(request.param, _settings(request, request.param))
    yield b
    b.close()


@pytest.fixture(params=SHARED_BACKENDS)
def shared_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The backends whose state every replica shares (all but memory)."""
    b = Backend(request.param, _settings(request, request.param))
    yield b
    b.close()
