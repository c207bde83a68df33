"""Fixtures shared by the whole test suite: free ports and real redis-server, memcached
and PostgreSQL servers, started by hscale's own local runtime code (local_stores.py), so
the tests' servers are the benchmark's."""

from __future__ import annotations

import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hscale_testkit import free_port_block

from hscale import settings, stores
from hscale.errors import UsageError
from hscale.procs import ManagedProcess, StartupError, child_env
from hscale.runtimes.local_stores import LocalStore, PostgresStore, StoreRun


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    """A loopback port with nothing listening on it (as of the call)."""
    return free_port()


# --- the stores' servers -----------------------------------------------------------------


class PostgresForTests(PostgresStore):
    """The local runtime's PostgreSQL, plus CREATEDB for the app's role and a way into the
    databases it makes, so a test can have an empty database of its own."""

    def bootstrap_sql(self) -> str:
        return super().bootstrap_sql() + f"ALTER ROLE {self.ROLE} CREATEDB;\n"

    def hba(self) -> str:
        return f"host all {self.ROLE} 127.0.0.1/32 scram-sha-256\n"


@dataclass
class StoreServer:
    """A store's server as the local runtime runs it (same binary, flags, authentication)."""

    store: LocalStore
    workdir: Path

    @property
    def port(self) -> int:
        return self.store.run.port

    @property
    def env(self) -> dict[str, str]:
        """The APP_* settings that point the app at this server."""
        return self.store.app_env()

    @property
    def url(self) -> str:  # redis
        return self.env["APP_REDIS_URL"]

    @property
    def server(self) -> str:  # memcached
        return self.env["APP_MEMCACHED_SERVER"]

    @property
    def dsn(self) -> str:  # postgres
        return self.env["APP_POSTGRES_DSN"]

    def sql(self, *statements: str) -> None:
        """Run statements as the app's role in its database, outside a transaction."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]  (test-made SQL)

    def create_database(self, name: str) -> str:
        """A new, empty database owned by the app's role; returns its DSN."""
        self.sql(f'CREATE DATABASE "{name}"')
        return self.dsn.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        """Stop the server, keeping its data for start()."""
        self.store.halt()

    def start(self) -> None:
        self.store.serve()

    def cleanup(self) -> None:
        self.store.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_store(name: str, workdir: Path, attempts: int = 3) -> StoreServer:
    """STORE=name's server on a free port (retried: another process may take the port)."""
    cls = PostgresForTests if name == "postgres" else stores.STORES[name].local_class()
    error: Exception | None = None
    for attempt in range(attempts):
        where = workdir / f"{name}{attempt}"
        (where / "tmp").mkdir(parents=True)
        run_id, logs = f"test-{secrets.token_hex(4)}", where / "logs"

        def spawn(proc: str, argv: list[str], logs: Path = logs, run_id: str = run_id):
            return ManagedProcess(proc, argv, logs / f"{proc}.log", child_env(run_id))

        values = {"STORE": name, "STORE_PORT": str(free_port_block())}
        store = cls(
            StoreRun(settings.load(values, host_cpus=2), run_id, where / "tmp", logs, spawn)
        )
        try:
            store.preflight()
        except UsageError as e:  # not installed: scripts/install-system-packages installs it
            pytest.fail(f"{name}: {e}", pytrace=False)
        try:
            store.start()
            return StoreServer(store, where)
        except StartupError as e:
            store.stop()
            error = e
    pytest.fail(f"{name} did not start: {error}", pytrace=False)


def _session_server(name: str, factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    server = start_store(name, factory.mktemp(name))
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    """One redis-server for the whole session (tests share it: flush what you use)."""
    yield from _session_server("redis", tmp_path_factory)


@pytest.fixture(scope="session")
def memcached_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    """One memcached for the whole session (tests share it: flush what you use)."""
    yield from _session_server("memcached", tmp_path_factory)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    """One PostgreSQL for the whole session (tests share it: clean the tables you use)."""
    yield from _session_server("postgres", tmp_path_factory)


def _factory(name: str, tmp_path: Path) -> Iterator[Callable[[], StoreServer]]:
    """Extra, private servers (e.g. to stop one mid-test); all stopped after the test."""
    servers: list[StoreServer] = []

    def start() -> StoreServer:
        servers.append(start_store(name, tmp_path / f"{name}-{len(servers)}"))
        return servers[-1]

    yield start
    for server in servers:
        server.cleanup()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[[], StoreServer]]:
    yield from _factory("redis", tmp_path)


@pytest.fixture
def memcached_server_factory(tmp_path: Path) -> Iterator[Callable[[], StoreServer]]:
    yield from _factory("memcached", tmp_path)


@pytest.fixture
def postgres_server_factory(tmp_path: Path) -> Iterator[Callable[[], StoreServer]]:
    yield from _factory("postgres", tmp_path)


SERVER_FIXTURES = {
    "redis_server", "redis_server_factory", "memcached_server", "memcached_server_factory",
    "postgres_server", "postgres_server_factory",
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers from where a test lives and what it starts (pyproject.toml lists them)."""
    for item in items:
        parts = item.path.parts
        if "docker" in parts or "swarm" in parts:
            item.add_marker(pytest.mark.docker)
        if "swarm" in parts:
            item.add_marker(pytest.mark.swarm)
        fixtures = set(getattr(item, "fixturenames", ()))
        if SERVER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.servers)
        if "offline_builds" in fixtures:  # tests/docker/test_compose.py: the image build
            item.add_marker(pytest.mark.slow)
