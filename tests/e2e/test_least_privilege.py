"""Least privilege on the local runtime (hscale/privileges.py), and readiness that trusts
only its own process. Run as root, Redis and the replicas drop to nobody where nobody can
read what they run, and stay root, saying why, where a directory on the way is closed.
Real processes, real Redis."""

from __future__ import annotations

import os
import pwd
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hscale_testkit import free_port_block

from hscale import privileges, settings
from hscale.procs import ManagedProcess, StartupError, child_env, wait_http
from hscale.runtimes.local_stores import RedisStore, StoreRun

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
NOBODY = pwd.getpwnam("nobody").pw_uid


@ROOT_ONLY
def test_blocked_names_the_first_closed_directory(tmp_path: Path) -> None:
    outer = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        inner = outer / "code"
        inner.mkdir()
        (inner / "app.py").write_text("")
        outer.chmod(0o711)
        inner.chmod(0o755)
        assert privileges.blocked(inner / "app.py") is None
        assert privileges.blocked(outer, listed=False) is None
        assert privileges.blocked(outer) == str(outer)  # passable, not listable
        outer.chmod(0o700)
        assert privileges.blocked(inner / "app.py") == str(outer)
    finally:
        subprocess.run(["rm", "-rf", str(outer)], check=True)


@ROOT_ONLY
def test_a_command_dropped_to_nobody_runs_as_nobody() -> None:
    argv, who = privileges.as_unprivileged(["/usr/bin/id", "-u"], ["/usr/bin/id"])
    assert who == "nobody"
    assert subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip() == (
        str(NOBODY)
    )


def _redis(tmp: Path) -> RedisStore:
    logs = tmp.parent / "logs"
    run_id = f"test-{secrets.token_hex(4)}"

    def spawn(name: str, argv: list[str]) -> ManagedProcess:
        return ManagedProcess(name, argv, logs / f"{name}.log", child_env(run_id))

    values = {"STORE": "redis", "STORE_PORT": str(free_port_block())}
    store = RedisStore(StoreRun(settings.load(values, host_cpus=2), run_id, tmp, logs, spawn))
    store.preflight()
    return store


@pytest.fixture
def run_tmp() -> Iterator[Path]:
    """A run's temporary directory as the local runtime makes it: /tmp, mode 0711."""
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="hscale-test-"))
    (base / "tmp").mkdir(mode=0o711)
    (base / "tmp").chmod(0o711)
    base.chmod(0o711)
    yield base / "tmp"
    subprocess.run(["rm", "-rf", str(base)], check=True)


def _ping(store: RedisStore) -> bytes:
    with socket.create_connection(("127.0.0.1", store.run.port), timeout=2) as s:
        s.sendall(f"AUTH {store.password}\r\nPING\r\n".encode())
        return s.recv(100)


@ROOT_ONLY
def test_redis_runs_as_nobody_and_owns_its_0600_config(run_tmp: Path) -> None:
    store = _redis(run_tmp)
    try:
        store.start()
        assert store.process is not None
        assert psutil.Process(store.process.pid).uids().real == NOBODY
        assert store.details()["runs_as"] == "nobody"
        conf = os.stat(store.conf)
        assert conf.st_uid == NOBODY and conf.st_mode & 0o777 == 0o600
        assert _ping(store) == b"+OK\r\n+PONG\r\n"
        store.restart()  # FAULT=restart-store: as nobody again
        assert psutil.Process(store.process.pid).uids().real == NOBODY
    finally:
        store.stop()


@ROOT_ONLY
def test_a_closed_directory_keeps_redis_root_and_says_why(run_tmp: Path) -> None:
    run_tmp.parent.chmod(0o700)
    store = _redis(run_tmp)
    try:
        store.start()
        assert store.process is not None
        assert psutil.Process(store.process.pid).uids().real == 0
        assert store.details()["runs_as"] == (
            f"root ({run_tmp.parent} is closed to other users, so nobody could not run it)"
        )
        assert _ping(store) == b"+OK\r\n+PONG\r\n"
    finally:
        store.stop()


def test_readiness_refuses_an_answer_from_a_process_that_is_not_ours(tmp_path: Path) -> None:
    """Another program already answers on the port: wait_http must not take its 200 for
    the replica's (two runs, or a stray server, on the same port)."""
    port = free_port_block()
    stray = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ours = ManagedProcess("replica-1", ["sleep", "30"], tmp_path / "r.log", dict(os.environ))
    try:
        deadline = time.monotonic() + 10
        while port not in {c.laddr.port for c in psutil.net_connections("tcp") if c.laddr}:
            assert time.monotonic() < deadline, "the stray server did not start"
            time.sleep(0.05)
        with pytest.raises(StartupError, match=f"port {port} is held by process"):
            wait_http(f"http://127.0.0.1:{port}/", ours, timeout=1.5)
        wait_http(f"http://127.0.0.1:{port}/", _as_managed(stray, tmp_path), timeout=5)
    finally:
        ours.stop()
        stray.kill()
        stray.wait()


def _as_managed(popen: subprocess.Popen, tmp_path: Path) -> ManagedProcess:
    """The stray server seen as the process that should answer: then it is accepted."""
    managed = ManagedProcess.__new__(ManagedProcess)
    managed.name, managed.log, managed.popen = "stray", tmp_path / "stray.log", popen
    return managed
