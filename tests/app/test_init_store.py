"""`python -m refapp.init_store`: run once before replicas start; idempotent; clear exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from refapp import create_app

APP_DIR = Path(__file__).resolve().parents[2] / "app"
TABLES = {"counter", "kv", "sessions"}


def init_store(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run the command as the harness does: from app/, settings as APP_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update({f"APP_{k}": v for k, v in settings.items()})
    return subprocess.run(
        [sys.executable, "-m", "refapp.init_store", *args],
        cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def start_init_store(*args: str, **settings: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update({f"APP_{k}": v for k, v in settings.items()})
    return subprocess.Popen(
        [sys.executable, "-m", "refapp.init_store", *args],
        cwd=APP_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {name for (name,) in rows}


def test_postgres_schema_created_once_and_idempotent(postgres_server) -> None:
    dsn = postgres_server.create_database("init_twice")
    assert tables(dsn) == set()
    first = init_store(STORE="postgres", POSTGRES_DSN=dsn)
    assert first.returncode == 0, first.stderr
    assert "postgres: schema ready" in first.stdout
    assert tables(dsn) == TABLES

    app = create_app({"STORE": "postgres", "POSTGRES_DSN": dsn, "TESTING": True})
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    assert client.post("/counter").get_json() == {"value": 1}
    assert client.post("/session", headers={"X-User": "u"}, json={"data": {}}).status_code == 200

    second = init_store(STORE="postgres", POSTGRES_DSN=dsn)
    assert second.returncode == 0, second.stderr
    assert tables(dsn) == TABLES
    # The second run kept the data.
    assert client.post("/counter").get_json() == {"value": 2}
    assert client.get("/session", headers={"X-User": "u"}).get_json()["version"] == 1
    app.extensions["store"].close()


def test_concurrent_runs_are_safe(postgres_server) -> None:
    dsn = postgres_server.create_database("init_racing")
    procs = [start_init_store(STORE="postgres", POSTGRES_DSN=dsn) for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert tables(dsn) == TABLES


def test_replicas_never_create_the_schema(postgres_server) -> None:
    dsn = postgres_server.create_database("never_initialised")
    app = create_app({"STORE": "postgres", "POSTGRES_DSN": dsn, "TESTING": True})
    client = app.test_client()
    # Not ready, and every store request a 503 (not a 500) until init_store has run.
    assert client.get("/readyz").status_code == 503
    assert client.post("/counter").status_code == 503
    assert client.get("/session", headers={"X-User": "u"}).status_code == 503
    assert tables(dsn) == set()
    app.extensions["store"].close()


def test_postgres_unreachable_exits_1(unused_port: int) -> None:
    dsn = f"postgresql://hscale@127.0.0.1:{unused_port}/hscale"
    start = time.monotonic()
    r = init_store(STORE="postgres", POSTGRES_DSN=dsn)
    assert r.returncode == 1
    assert r.stderr.startswith("init_store: store unreachable: postgres: OperationalError")
    assert r.stdout == ""
    assert time.monotonic() - start < 10


def test_wait_retries_until_the_store_is_up(postgres_server_factory) -> None:
    server = postgres_server_factory()
    server.stop()
    proc = start_init_store("--wait", "30", STORE="postgres", POSTGRES_DSN=server.dsn)
    time.sleep(1.0)  # it is retrying by now
    assert proc.poll() is None
    server.start()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "schema ready" in out
    assert tables(server.dsn) == TABLES


def test_wait_gives_up_after_its_time(unused_port: int) -> None:
    start = time.monotonic()
    r = init_store("--wait", "1", STORE="memcached", MEMCACHED_SERVER=f"127.0.0.1:{unused_port}")
    assert r.returncode == 1
    assert "store unreachable: memcached" in r.stderr
    assert 1.0 <= time.monotonic() - start < 10


@pytest.mark.parametrize("store", ["redis", "memcached"])
def test_key_value_stores_are_only_pinged(request, store: str, unused_port: int) -> None:
    if store == "redis":
        good = {"REDIS_URL": request.getfixturevalue("redis_server").url}
        bad = {"REDIS_URL": f"redis://127.0.0.1:{unused_port}/0"}
    else:
        good = {"MEMCACHED_SERVER": request.getfixturevalue("memcached_server").server}
        bad = {"MEMCACHED_SERVER": f"127.0.0.1:{unused_port}"}
    r = init_store(STORE=store, **good)
    assert (r.returncode, r.stdout) == (0, f"init_store: {store}: answers; nothing to create\n")
    r = init_store(STORE=store, **bad)
    assert r.returncode == 1
    assert f"init_store: store unreachable: {store}: " in r.stderr


def test_memory_has_nothing_to_prepare() -> None:
    r = init_store(STORE="memory")
    assert r.returncode == 0
    assert "memory: nothing to prepare" in r.stdout


@pytest.mark.parametrize(
    ("args", "settings", "message"),
    [([], {"STORE": "mongo"}, "STORE must be one of"),
     ([], {"STORE": "memcached", "MEMCACHED_SERVER": "nohost"}, "MEMCACHED_SERVER"),
     ([], {"STORE": "postgres", "POSTGRES_DSN": "host=x port"}, "POSTGRES_DSN"),
     ([], {"POSTGRES_POOL_MIN": "5", "POSTGRES_POOL_MAX": "2"}, "POSTGRES_POOL_MIN"),
     (["--wait", "-1"], {}, "--wait"),
     (["--wait", "soon"], {}, "--wait"),
     (["--bogus"], {}, "unrecognized")],
)  # fmt: skip
def test_bad_settings_or_arguments_exit_2(args: list[str], settings: dict, message: str):
    r = init_store(*args, **settings)
    assert r.returncode == 2
    assert message in r.stderr
