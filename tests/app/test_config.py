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
     ("REPLICA", ""), ("REPLICA", "a\nb"), ("REPLICA", "副本")],
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
    code = (
        "import sys; from refapp import create_app; create_app()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('hscale', 'analysis'))\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(APP_DIR)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=APP_DIR, timeout=30)
    sources = "".join(p.read_text() for p in (APP_DIR / "refapp").glob("*.py"))
    assert not re.search(r"^\s*(from|import)\s+(hscale|analysis)\b", sources, re.MULTILINE)
