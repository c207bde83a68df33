"""Configuration: DEFAULTS, APP_* environment variables, test_config, and the store's pool."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from refapp import DEFAULTS, create_app
from werkzeug.middleware.proxy_fix import ProxyFix

APP_DIR = Path(__file__).resolve().parents[2] / "app"


@pytest.fixture(autouse=True)
def no_app_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("APP_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    app = create_app()
    for key, value in DEFAULTS.items():
        assert app.config[key] == value
    assert app.config["REPLICA"] == socket.gethostname()
    assert app.config["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert app.config["MAX_CONTENT_LENGTH"] == 32 * 1024
    assert app.config["STORE"] == "redis"
    assert app.extensions["store"].name == "redis"


@pytest.mark.parametrize("store", ["redis", "memcached", "postgres", "memory"])
def test_store_is_chosen_by_env(monkeypatch: pytest.MonkeyPatch, store: str) -> None:
    monkeypatch.setenv("APP_STORE", store)
    assert create_app().extensions["store"].name == store


def test_every_store_name_has_a_backend() -> None:
    from refapp.config import STORES
    from refapp.stores import BACKENDS

    assert tuple(BACKENDS) == STORES


def test_store_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "APP_STORE": "postgres",
        "APP_MEMCACHED_SERVER": "[::1]:11300",
        "APP_MEMCACHED_POOL_SIZE": "3",
        "APP_MEMCACHED_CONNECT_TIMEOUT": "0.25",
        "APP_MEMCACHED_TIMEOUT": "2",
        "APP_POSTGRES_DSN": "postgresql://app:s3cret@db:5433/bench",
        "APP_POSTGRES_POOL_MIN": "0",
        "APP_POSTGRES_POOL_MAX": "8",
        "APP_POSTGRES_POOL_TIMEOUT": "0.75",
        "APP_POSTGRES_CONNECT_TIMEOUT": "3",
        "APP_POSTGRES_STATEMENT_TIMEOUT_MS": "250",
        "APP_SESSION_PREFIX": "s:",
        "APP_SESSION_MAX_BYTES": "100",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    c = create_app().config
    assert c["MEMCACHED_SERVER"] == "[::1]:11300"
    assert (c["MEMCACHED_POOL_SIZE"], c["MEMCACHED_CONNECT_TIMEOUT"]) == (3, 0.25)
    assert c["MEMCACHED_TIMEOUT"] == 2.0 and isinstance(c["MEMCACHED_TIMEOUT"], float)
    assert c["POSTGRES_DSN"] == "postgresql://app:s3cret@db:5433/bench"
    assert (c["POSTGRES_POOL_MIN"], c["POSTGRES_POOL_MAX"], c["POSTGRES_POOL_TIMEOUT"]) == (
        0,
        8,
        0.75,
    )
    assert (c["POSTGRES_CONNECT_TIMEOUT"], c["POSTGRES_STATEMENT_TIMEOUT_MS"]) == (3, 250)
    assert (c["SESSION_PREFIX"], c["SESSION_MAX_BYTES"]) == ("s:", 100)


def test_memcached_client_is_configured_explicitly() -> None:
    app = create_app(
        {"STORE": "memcached", "MEMCACHED_SERVER": "[::1]:11300", "MEMCACHED_POOL_SIZE": 3,
         "MEMCACHED_CONNECT_TIMEOUT": 0.25, "MEMCACHED_TIMEOUT": 0.75}
    )  # fmt: skip
    store = app.extensions["store"]
    assert not store._client.created  # lazy: nothing until first use
    client = store.client
    assert client.server == ("::1", 11300)
    assert (client.connect_timeout, client.timeout) == (0.25, 0.75)
    assert client.client_pool.max_size == 3
    assert client.default_noreply is False  # writes wait for the server's answer
    assert store.client is client  # one pool per process
    store.close()


def test_postgres_pool_is_configured_explicitly() -> None:
    app = create_app(
        {"STORE": "postgres", "POSTGRES_DSN": "postgresql://u@127.0.0.1:1/d",
         "POSTGRES_POOL_MIN": 2, "POSTGRES_POOL_MAX": 5, "POSTGRES_POOL_TIMEOUT": 0.5,
         "POSTGRES_CONNECT_TIMEOUT": 3, "POSTGRES_STATEMENT_TIMEOUT_MS": 250}
    )  # fmt: skip
    store = app.extensions["store"]
    assert not store._pool.created
    pool = store.pool
    assert (pool.min_size, pool.max_size, pool.timeout) == (2, 5, 0.5)
    assert pool.reconnect_timeout == 0.5
    assert pool.kwargs == {
        "connect_timeout": 3,
        "options": "-c statement_timeout=250",
        "autocommit": True,
    }
    store.close()


def test_postgres_dsn_options_win() -> None:
    dsn = "postgresql://u@h/d?connect_timeout=7&options=-c%20statement_timeout%3D9"
    app = create_app({"STORE": "postgres", "POSTGRES_DSN": dsn})
    assert app.extensions["store"].connect_kwargs == {}


def test_env_overrides_with_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_REDIS_URL", "redis://:secret@store:6380/2")
    monkeypatch.setenv("APP_REPLICA", "1.50")  # stays text, not the float 1.5
    monkeypatch.setenv("APP_REDIS_POOL_SIZE", "8")
    monkeypatch.setenv("APP_REDIS_SOCKET_TIMEOUT", "1")
    monkeypatch.setenv("APP_WORK_MAX_MS", "0")
    app = create_app()
    assert app.config["REDIS_URL"] == "redis://:secret@store:6380/2"
    assert app.config["REPLICA"] == "1.50"
    assert app.config["REDIS_POOL_SIZE"] == 8
    assert app.config["REDIS_SOCKET_TIMEOUT"] == 1.0
    assert isinstance(app.config["REDIS_SOCKET_TIMEOUT"], float)
    assert app.config["WORK_MAX_MS"] == 0
    assert app.test_client().get("/json").headers["X-Replica"] == "1.50"


def test_test_config_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_REPLICA", "from-env")
    assert create_app({"REPLICA": "from-test"}).config["REPLICA"] == "from-test"


@pytest.mark.parametrize(
    ("key", "value"),
    [("REDIS_POOL_SIZE", "many"), ("REDIS_POOL_SIZE", "0"), ("REDIS_RETRIES", "-1"),
     ("REDIS_SOCKET_TIMEOUT", "0"), ("KV_MAX_KEY_LEN", "1.5"), ("WORK_MAX_MS", "true"),
     ("REPLICA", ""), ("REPLICA", "a\nb"), ("REPLICA", "副本"),
     ("STORE", "mongo"), ("STORE", "Redis"), ("STORE", ""),
     ("MEMCACHED_SERVER", "localhost"), ("MEMCACHED_SERVER", ":11211"),
     ("MEMCACHED_SERVER", "h:0"), ("MEMCACHED_SERVER", "h:65536"), ("MEMCACHED_SERVER", "h:²"),
     ("MEMCACHED_POOL_SIZE", "0"), ("MEMCACHED_TIMEOUT", "0"), ("MEMCACHED_CONNECT_TIMEOUT", "-1"),
     ("POSTGRES_POOL_MIN", "-1"), ("POSTGRES_POOL_MAX", "0"), ("POSTGRES_POOL_MIN", "9"),
     ("POSTGRES_POOL_TIMEOUT", "0"), ("POSTGRES_CONNECT_TIMEOUT", "0.5"),
     ("POSTGRES_STATEMENT_TIMEOUT_MS", "0"), ("SESSION_MAX_BYTES", "0")],
)  # fmt: skip
def test_bad_env_values_fail_at_startup(monkeypatch: pytest.MonkeyPatch, key: str, value: str):
    monkeypatch.setenv(f"APP_{key}", value)
    with pytest.raises(ValueError, match=key):
        create_app()


def test_proxy_fix_trusts_exactly_one_hop() -> None:
    app = create_app()
    assert isinstance(app.wsgi_app, ProxyFix)
    assert (app.wsgi_app.x_for, app.wsgi_app.x_proto) == (1, 1)
    assert (app.wsgi_app.x_host, app.wsgi_app.x_port, app.wsgi_app.x_prefix) == (0, 0, 0)

    @app.get("/whoami")
    def whoami() -> dict:
        from flask import request

        return {"addr": request.remote_addr, "scheme": request.scheme}

    r = app.test_client().get(
        "/whoami", headers={"X-Forwarded-For": "6.6.6.6, 10.0.0.7", "X-Forwarded-Proto": "https"}
    )
    assert r.get_json() == {"addr": "10.0.0.7", "scheme": "https"}


def test_pool_is_configured_explicitly(redis_server) -> None:
    app = create_app(
        {
            "REDIS_URL": redis_server.url,
            "REDIS_POOL_SIZE": 3,
            "REDIS_POOL_TIMEOUT": 0.25,
            "REDIS_SOCKET_TIMEOUT": 0.7,
            "REDIS_CONNECT_TIMEOUT": 0.3,
            "REDIS_RETRIES": 2,
            "REDIS_HEALTH_CHECK_INTERVAL": 11,
        }
    )
    store = app.extensions["store"]
    assert store._client is None  # lazy: nothing until first use
    pool = store.client.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert (pool.max_connections, pool.timeout) == (3, 0.25)
    kw = pool.connection_kwargs
    assert (kw["socket_timeout"], kw["socket_connect_timeout"]) == (0.7, 0.3)
    assert kw["health_check_interval"] == 11
    assert kw["protocol"] == 2
    assert kw["retry"].get_retries() == 2
    assert kw["retry"]._supported_errors == (RedisConnectionError,)
    assert store.client is store.client  # one client per process
    assert store.ping()
    store.close()


def test_exhausted_pool_fails_fast_instead_of_hanging(redis_server) -> None:
    app = create_app(
        {"REDIS_URL": redis_server.url, "REDIS_POOL_SIZE": 1, "REDIS_POOL_TIMEOUT": 0.1}
    )
    store = app.extensions["store"]
    held = store.client.connection_pool.get_connection()  # the only connection
    try:
        r = app.test_client().get("/readyz")
        assert r.status_code == 503
    finally:
        store.client.connection_pool.release(held)
    assert app.test_client().get("/readyz").status_code == 200
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_each_forked_process_gets_its_own_pool(redis_server) -> None:
    app = create_app({"REDIS_URL": redis_server.url})
    store = app.extensions["store"]
    parent_client = store.client
    assert store.ping()
    pid = os.fork()
    if pid == 0:  # child: like a gunicorn worker forked after the app was built
        code = 1
        try:
            code = 0 if store.client is not parent_client and store.ping() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.client is parent_client and store.ping()  # parent's pool still works
    store.close()


def test_app_imports_no_hscale_or_analysis() -> None:
    # Nor the client libraries of stores it does not use (psycopg is a slow import).
    code = (
        "import sys; from refapp import create_app; create_app()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "    ('hscale', 'analysis', 'psycopg', 'psycopg_pool', 'pymemcache'))\n"
        "assert not bad, bad\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env["PYTHONPATH"] = str(APP_DIR)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=APP_DIR, timeout=30)
    sources = "".join(p.read_text() for p in (APP_DIR / "refapp").rglob("*.py"))
    assert not re.search(r"^\s*(from|import)\s+(hscale|analysis)\b", sources, re.MULTILINE)
