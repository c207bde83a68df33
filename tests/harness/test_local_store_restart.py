"""LocalStore.restart(): the same server, port and files, stopped and started again (what
a store restart costs the app). The servers are the local runtime's own."""

from __future__ import annotations

import psycopg
import redis


def test_redis_restart_answers_again_and_loses_what_it_held(redis_server_factory) -> None:
    server = redis_server_factory()
    client = redis.Redis.from_url(server.url)
    client.set("k", "v")
    first_pid = server.store.process.pid
    server.store.restart()
    assert server.store.process.pid != first_pid
    assert client.get("k") is None  # no persistence: hscale's default, documented
    assert client.ping()
    client.close()


def test_postgres_restart_keeps_its_data(postgres_server_factory) -> None:
    server = postgres_server_factory()
    server.sql("CREATE TABLE t (v int)", "INSERT INTO t VALUES (7)")
    server.store.restart()
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [(7,)]


def test_the_runtimes_own_cluster_lets_one_role_into_one_database(
    postgres_server,
) -> None:
    """The tests' cluster widens pg_hba (PostgresForTests); the runtime's does not."""
    from hscale.runtimes.local_stores import PostgresStore

    assert "host hscale hscale 127.0.0.1/32" in PostgresStore.hba(postgres_server.store)
    assert "CREATEDB" not in PostgresStore.bootstrap_sql(postgres_server.store)


def test_local_redis_needs_the_runs_password_and_has_no_config(redis_server) -> None:
    """Any local user reaches 127.0.0.1: no password, no access; with it, no CONFIG."""
    import stat

    import pytest

    port = redis_server.port
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping()
    with pytest.raises(redis.ResponseError, match="unknown command"):
        client.config_get("dir")
    conf = redis_server.store.conf
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert redis_server.store.password in conf.read_text()
    client.close()
