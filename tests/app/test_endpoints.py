"""Happy paths of every endpoint, on a real Redis."""

from __future__ import annotations

import os
import threading
import time

import redis
from flask import Flask
from flask.testing import FlaskClient

REPLICA = "test-replica"  # what the app fixture sets


def test_json(client: FlaskClient) -> None:
    r = client.get("/json")
    assert r.status_code == 200
    assert r.get_json() == {"message": "Hello, World!"}
    assert r.headers["X-Replica"] == REPLICA
    assert r.mimetype == "application/json"


def test_json_touches_no_store(unused_port: int) -> None:
    from refapp import create_app

    app = create_app({"REDIS_URL": f"redis://127.0.0.1:{unused_port}/0"})
    assert app.test_client().get("/json").status_code == 200
    assert app.extensions["store"]._client is None  # no pool was even created


def test_counter_increments(client: FlaskClient, redis_db: redis.Redis) -> None:
    first = client.post("/counter")
    second = client.post("/counter")
    assert first.status_code == second.status_code == 200
    assert first.get_json() == {"value": 1}
    assert second.get_json() == {"value": 2}
    assert second.headers["X-Replica"] == REPLICA
    assert redis_db.get("hscale:counter") == "2"


def test_counter_accepts_optional_bodies(client: FlaskClient) -> None:
    assert client.post("/counter", json={"anything": 1}).status_code == 200
    assert client.post("/counter", data="", content_type="application/json").status_code == 200
    assert client.post("/counter", data="not json", content_type="text/plain").status_code == 200
    assert client.post("/counter").get_json() == {"value": 4}


def test_counter_is_atomic_across_threads(app: Flask) -> None:
    threads, per_thread = 8, 25
    seen: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        client = app.test_client()
        for _ in range(per_thread):
            r = client.post("/counter")
            assert r.status_code == 200
            with lock:
                seen.append(r.get_json()["value"])

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    # Every increment got its own value: no lost or duplicated updates.
    assert sorted(seen) == list(range(1, threads * per_thread + 1))


def test_kv_round_trip(client: FlaskClient, redis_db: redis.Redis) -> None:
    key = "user:42_a.b-c"
    r = client.put(f"/kv/{key}", json={"value": "hello"})
    assert r.status_code == 200
    assert r.get_json() == {"key": key, "value": "hello"}
    assert r.headers["X-Replica"] == REPLICA
    r = client.get(f"/kv/{key}")
    assert r.status_code == 200
    assert r.get_json() == {"key": key, "value": "hello"}
    assert redis_db.get(f"hscale:kv:{key}") == "hello"
    # Overwrite, and values at the limits.
    client.put(f"/kv/{key}", json={"value": ""})
    assert client.get(f"/kv/{key}").get_json()["value"] == ""
    big = "é" * 2048  # 4096 UTF-8 bytes: exactly the limit
    assert client.put(f"/kv/{key}", json={"value": big}).status_code == 200
    assert client.get(f"/kv/{key}").get_json()["value"] == big
    longest = "k" * 64
    assert client.put(f"/kv/{longest}", json={"value": "v"}).status_code == 200
    assert client.get(f"/kv/{longest}").get_json() == {"key": longest, "value": "v"}


def test_kv_missing_key_is_404_json(client: FlaskClient) -> None:
    r = client.get("/kv/absent")
    assert r.status_code == 404
    assert r.get_json() == {"error": "no such key", "status": 404}
    assert r.headers["X-Replica"] == REPLICA


def test_kv_prefix_and_counter_key_are_configurable(redis_server, redis_db: redis.Redis) -> None:
    from refapp import create_app

    app = create_app(
        {"REDIS_URL": redis_server.url, "KV_PREFIX": "p:", "COUNTER_KEY": "c", "TESTING": True}
    )
    client = app.test_client()
    client.put("/kv/x", json={"value": "1"})
    client.post("/counter")
    assert redis_db.get("p:x") == "1"
    assert redis_db.get("c") == "1"
    app.extensions["store"].close()


def test_work_spends_the_cpu_time_asked(client: FlaskClient) -> None:
    # The test client runs the view in this thread, so this thread's CPU time is the view's.
    start = time.thread_time()
    r = client.get("/work?ms=50")
    used = time.thread_time() - start
    assert r.status_code == 200
    body = r.get_json()
    assert body["ms"] == 50
    assert isinstance(body["iterations"], int) and body["iterations"] > 0
    assert 0.050 <= used < 0.5
    assert r.headers["X-Replica"] == REPLICA


def test_work_zero_and_max(client: FlaskClient) -> None:
    assert client.get("/work?ms=0").get_json() == {"ms": 0, "iterations": 0}
    assert client.get("/work?ms=1000").status_code == 200


def test_healthz(client: FlaskClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok", "replica": REPLICA, "pid": os.getpid()}
    assert r.headers["X-Replica"] == REPLICA


def test_readyz(client: FlaskClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ready"}
    assert r.headers["X-Replica"] == REPLICA


def test_head_is_served(client: FlaskClient) -> None:
    r = client.head("/json")
    assert r.status_code == 200
    assert r.headers["X-Replica"] == REPLICA
