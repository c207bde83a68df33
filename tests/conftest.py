"""Fixtures shared by the whole test suite: free ports and real redis-server, memcached
and PostgreSQL processes."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hscale_testkit import free_port_block

REDIS_START_TIMEOUT_S = 10.0
MEMCACHED_START_TIMEOUT_S = 10.0
POSTGRES_START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_answers_ping(port: int, timeout: float = 0.5) -> bool:
    """True if a Redis server on 127.0.0.1:port answers PING (raw RESP, no client library)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A redis-server process on loopback, with no persistence."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_redis_server(workdir: Path, attempts: int = 3) -> RedisServer:
    """Start redis-server on a free loopback port and wait until it answers PING."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail(
            "redis-server is not on PATH; the test suite needs a real Redis "
            "(e.g. `apt-get install redis-server`)",
            pytrace=False,
        )
    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(attempts):  # retry: another process may take the port first
        port = free_port()
        log = workdir / f"redis-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(workdir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )  # fmt: skip
        server = RedisServer(port=port, proc=proc, log=log)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if redis_answers_ping(port):
                return server
            time.sleep(0.02)
        server.stop()
    pytest.fail(f"redis-server did not start; last log:\n{log.read_text()[-2000:]}", pytrace=False)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole session (tests share it: flush what you use)."""
    server = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Start extra, private redis-servers (e.g. to stop one mid-test); all stopped after."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = start_redis_server(tmp_path / f"redis{len(servers)}")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def unused_port() -> int:
    """A loopback port with nothing listening on it (as of the call)."""
    return free_port()


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- memcached -------------------------------------------------------------------------


def memcached_answers(port: int, timeout: float = 0.5) -> bool:
    """True if a memcached on 127.0.0.1:port answers ``version`` (raw text protocol)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"version\r\n")
            return s.recv(64).startswith(b"VERSION")
    except OSError:
        return False


@dataclass
class MemcachedServer:
    """A memcached process on loopback (TCP only)."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def server(self) -> str:
        """The app's MEMCACHED_SERVER setting for this server."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        _stop(self.proc)


def start_memcached(workdir: Path, attempts: int = 3) -> MemcachedServer:
    exe = shutil.which("memcached")
    if exe is None:
        pytest.skip("memcached is not installed (scripts/install-system-packages installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    # memcached refuses to run as root unless told which user to become.
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
    for _ in range(attempts):  # retry: another process may take the port first
        port = free_port_block()
        log = workdir / f"memcached-{port}.log"
        with log.open("wb") as out:
            # -M: refuse writes when full instead of evicting (tests must not lose keys).
            proc = subprocess.Popen(
                [exe, "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-m", "64", "-M",
                 *as_user],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )  # fmt: skip
        server = MemcachedServer(port=port, proc=proc, log=log)
        deadline = time.monotonic() + MEMCACHED_START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if memcached_answers(port):
                return server
            time.sleep(0.02)
        server.stop()
    pytest.fail(f"memcached did not start; last log:\n{log.read_text()[-2000:]}", pytrace=False)


@pytest.fixture(scope="session")
def memcached_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemcachedServer]:
    """One memcached for the whole session (tests share it: flush what you use)."""
    server = start_memcached(tmp_path_factory.mktemp("memcached"))
    yield server
    server.stop()


@pytest.fixture
def memcached_server_factory(tmp_path: Path) -> Iterator[Callable[[], MemcachedServer]]:
    """Start extra, private memcached processes (e.g. to stop one mid-test)."""
    servers: list[MemcachedServer] = []

    def start() -> MemcachedServer:
        server = start_memcached(tmp_path / f"memcached{len(servers)}")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# --- PostgreSQL ------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """Debian's newest /usr/lib/postgresql/<major>/bin, else wherever `postgres` is."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    found = [d for d in found if d.parent.name.isdigit()]
    if found:
        return max(found, key=lambda d: int(d.parent.name))
    exe = shutil.which("postgres")
    return Path(exe).resolve().parent if exe else None


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory, on loopback with trust auth.

    Its superuser is ``postgres``; the app's role and database are both ``hscale`` (the
    owner of its database, not a superuser). Restartable on the same port and data.
    """

    bindir: Path
    root: Path  # removed by cleanup(): data directory, unix socket and log
    port: int
    run_as: dict[str, Any] = field(default_factory=dict)  # Popen's user/group when root
    proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        """The app's POSTGRES_DSN for this server."""
        return self.dsn_for("hscale")

    def dsn_for(self, dbname: str, user: str = "hscale") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def admin(self, *statements: str, dbname: str = "postgres") -> None:
        """Run statements as the superuser, outside a transaction (CREATE DATABASE)."""
        import psycopg

        with psycopg.connect(self.dsn_for(dbname, "postgres"), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def create_database(self, name: str) -> str:
        """A new, empty database owned by ``hscale``; returns its DSN."""
        self.admin(f'CREATE DATABASE "{name}" OWNER hscale')
        return self.dsn_for(name)

    def start(self) -> None:
        import psycopg

        with self.log.open("ab") as out:
            # No durability needed in tests: skip the fsyncs that make writes slow.
            self.proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.root / "data"),
                 "-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.root),
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "shared_buffers=16MB"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                **self.run_as,
            )  # fmt: skip
        deadline = time.monotonic() + POSTGRES_START_TIMEOUT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                psycopg.connect(self.dsn_for("postgres", "postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"postgres did not start; log:\n{self.log.read_text()[-2000:]}", pytrace=False)

    def stop(self) -> None:
        # SIGINT is the "fast" shutdown: SIGTERM ("smart") would wait for every client,
        # pooled connections included, to disconnect.
        if self.proc is not None:
            _stop(self.proc, signal.SIGINT)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("PostgreSQL is not installed (scripts/install-system-packages installs it)")
    run_as: dict[str, Any] = {}
    # The pytest temp dirs are private to root, so the cluster lives in its own dir.
    root = Path(tempfile.mkdtemp(prefix="hscale-pg-"))
    if os.geteuid() == 0:  # postgres refuses to run as root: become Debian's postgres user
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.fail("running as root needs a 'postgres' OS user", pytrace=False)
        run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        os.chown(root, pw.pw_uid, pw.pw_gid)
    server = PostgresServer(bindir=bindir, root=root, port=free_port_block(), run_as=run_as)
    try:
        initdb = subprocess.run(
            [str(bindir / "initdb"), "-D", str(root / "data"), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            capture_output=True,
            text=True,
            cwd=root,
            **run_as,
        )  # fmt: skip
        if initdb.returncode != 0:
            pytest.fail(f"initdb failed:\n{initdb.stdout}{initdb.stderr}", pytrace=False)
        server.start()
        server.admin("CREATE ROLE hscale LOGIN", "CREATE DATABASE hscale OWNER hscale")
    except BaseException:
        server.cleanup()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the whole session (tests share it: clean the tables you use)."""
    server = start_postgres()
    yield server
    server.cleanup()


@pytest.fixture
def postgres_server_factory() -> Iterator[Callable[[], PostgresServer]]:
    """Start extra, private PostgreSQL clusters (e.g. to stop one mid-test)."""
    servers: list[PostgresServer] = []

    def start() -> PostgresServer:
        server = start_postgres()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.cleanup()


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
