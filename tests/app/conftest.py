"""Fixtures for the reference app's tests: an app on the session's real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from refapp import create_app

REPLICA = "test-replica"


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
