"""GET /counter and GET/POST /session through the app, on every backend; and which
backends share state between replicas (every one but memory)."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient
from storekit import REPLICA, Backend, assert_error


def alice(**headers: str) -> dict[str, str]:
    return {"X-User": "alice", **headers}


@pytest.fixture
def client(backend: Backend) -> FlaskClient:
    return backend.make_app().test_client()


def test_get_counter_reads_without_counting(client: FlaskClient) -> None:
    assert client.get("/counter").get_json() == {"value": 0}
    assert client.post("/counter").get_json() == {"value": 1}
    assert client.post("/counter").get_json() == {"value": 2}
    r = client.get("/counter")
    assert (r.status_code, r.get_json()) == (200, {"value": 2})
    assert r.headers["X-Replica"] == REPLICA
    assert client.get("/counter").get_json() == {"value": 2}


def test_session_round_trip(client: FlaskClient) -> None:
    r = client.get("/session", headers=alice())
    assert_error(r, 404)
    data = {
        "cart": [{"sku": "a-1", "qty": 2}],
        "name": "Zoë \U0001f600 \\u0000",
        "n": None,
        "numbers": [12345678901234567890, 1.0, -0.5, 1e-3, True],
    }
    r = client.post("/session", headers=alice(), json={"data": data})
    assert (r.status_code, r.get_json()) == (200, {"user": "alice", "version": 1})
    assert r.headers["X-Replica"] == REPLICA
    r = client.get("/session", headers=alice())
    assert r.status_code == 200
    assert r.get_json() == {"user": "alice", "data": data, "version": 1}
    assert client.post("/session", headers=alice(), json={"data": {}}).get_json()["version"] == 2
    assert client.get("/session", headers=alice()).get_json()["data"] == {}
    # Per user: bob has none, and his first write is his version 1.
    assert_error(client.get("/session", headers={"X-User": "bob"}), 404)
    r = client.post("/session", headers={"X-User": "bob"}, json={"data": {"x": 1}})
    assert r.get_json() == {"user": "bob", "version": 1}


def test_session_size_limit_counts_utf8_bytes(client: FlaskClient) -> None:
    # {"v":"<s>"} is 8 bytes of JSON around s: fill exactly 4096 bytes, then one more.
    at_limit = {"v": "é" * ((4096 - 8) // 2)}
    assert len(json.dumps(at_limit, ensure_ascii=False, separators=(",", ":")).encode()) == 4096
    assert client.post("/session", headers=alice(), json={"data": at_limit}).status_code == 200
    assert client.get("/session", headers=alice()).get_json()["data"] == at_limit
    over = {"v": at_limit["v"] + "x"}
    body = assert_error(client.post("/session", headers=alice(), json={"data": over}), 413)
    assert "4096" in body["error"]
    assert client.get("/session", headers=alice()).get_json()["version"] == 1  # not stored


def test_memory_is_not_shared_between_replicas() -> None:
    from refapp import create_app

    # Two create_app calls: two replicas of one deployment, as far as the app can tell.
    one = create_app({"STORE": "memory", "REPLICA": "r1"}).test_client()
    two = create_app({"STORE": "memory", "REPLICA": "r2"}).test_client()
    assert one.post("/counter").get_json() == {"value": 1}
    assert one.post("/counter").get_json() == {"value": 2}
    assert two.post("/counter").get_json() == {"value": 1}  # its own count
    assert two.get("/counter").get_json() == {"value": 1}
    assert one.post("/session", headers=alice(), json={"data": {"a": 1}}).status_code == 200
    # The session lives on the other replica only.
    assert two.get("/session", headers=alice()).status_code == 404
    assert two.post("/session", headers=alice(), json={"data": {"a": 2}}).get_json()["version"] == 1


def test_shared_stores_are_shared_between_replicas(shared_backend: Backend) -> None:
    one = shared_backend.make_app(REPLICA="r1").test_client()
    two = shared_backend.make_app(REPLICA="r2").test_client()
    assert one.post("/counter").get_json() == {"value": 1}
    assert two.post("/counter").get_json() == {"value": 2}
    assert one.get("/counter").get_json() == {"value": 2}
    assert one.put("/kv/k", json={"value": "from r1"}).status_code == 200
    assert two.get("/kv/k").get_json() == {"key": "k", "value": "from r1"}
    # A user bounced between replicas (no sticky sessions) sees one session.
    assert one.post("/session", headers=alice(), json={"data": {"step": 1}}).status_code == 200
    r = two.get("/session", headers=alice())
    assert r.headers["X-Replica"] == "r2"
    assert r.get_json() == {"user": "alice", "data": {"step": 1}, "version": 1}
    assert two.post("/session", headers=alice(), json={"data": {"step": 2}}).get_json() == {
        "user": "alice",
        "version": 2,
    }
    assert one.get("/session", headers=alice()).get_json()["data"] == {"step": 2}
