"""Fixtures shared by the whole test suite: free ports and real redis-server processes."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REDIS_START_TIMEOUT_S = 10.0


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
