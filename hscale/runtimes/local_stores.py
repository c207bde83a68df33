"""The local runtime's shared store, as STORE selects. Each one starts its server on
127.0.0.1:STORE_PORT as a ManagedProcess (marked with the run id, its CPU counted as the
`store` component), tells the replicas how to reach it (APP_* variables) and tells the
manifest what ran. `memory` starts nothing: each app process keeps its own dict."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hscale import privileges, stores
from hscale.errors import UsageError
from hscale.privileges import as_unprivileged
from hscale.procs import ManagedProcess, StartupError, child_env, wait_tcp
from hscale.runtimes.binaries import find_binary, sibling, version
from hscale.settings import Settings

# name, argv -> a started process (in the `store` cgroup, marked, logging to logs/<name>.log)
Spawn = Callable[[str, list[str]], ManagedProcess]


@dataclass
class StoreRun:
    """What a store needs to know about the run it serves."""

    settings: Settings
    run_id: str
    tmp: Path  # the run's private temporary directory, removed at teardown
    logs: Path
    spawn: Spawn

    @property
    def port(self) -> int:
        return self.settings.store_port


class LocalStore:
    """What every store offers the local runtime."""

    name = ""
    uses_port = False

    def __init__(self, run: StoreRun) -> None:
        self.run = run
        self.binary: str | None = None  # found by preflight()
        self.process: ManagedProcess | None = None

    @property
    def exe(self) -> str:
        """The server binary; preflight() has found it before anything starts."""
        if self.binary is None:
            raise StartupError(f"{type(self).__name__}: preflight() did not run")
        return self.binary

    def preflight(self) -> None:
        """Find binaries and users (raises UsageError)."""

    def start(self) -> None:
        """Prepare the server's files, start it and return once it answers a real request."""
        self.prepare()
        self.serve()

    def prepare(self) -> None:
        """What the server needs on disk before its first start (a cluster, a directory)."""

    def serve(self) -> None:
        """Start the prepared server (again, after halt()) and wait until it answers."""

    def restart(self) -> None:
        """Stop the server and start it again on the same port and files: what a store
        restart costs the app (Redis without persistence comes back empty)."""
        self.halt()
        self.serve()

    def app_env(self) -> dict[str, str]:
        return {"APP_STORE": self.name}

    def details(self) -> dict[str, Any]:
        raise NotImplementedError

    def halt(self) -> None:
        """Stop the server process, keeping its files for serve()."""
        if self.process is not None:
            self.process.stop()

    def stop(self) -> None:
        """Stop the server for good (its files go with the run's tmp directory)."""
        self.halt()

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        assert self.process is not None
        wait_tcp(self.run.port, self.process, timeout=timeout)
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.process.alive() or time.monotonic() > deadline:
                raise StartupError(
                    f"{self.name} on port {self.run.port} does not answer {what}; "
                    f"log {self.process.log}:\n{self.process.log_tail()}"
                )
            time.sleep(0.05)


class MemoryStore(LocalStore):
    """No server: each app process keeps its own dict (the anti-pattern, on purpose)."""

    name = "memory"

    def details(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "process": None,
            "shared": False,
            "note": "in-process, not shared: each app process has its own dict, so a read "
            "that lands on another replica or worker misses",
        }


class NoStore(LocalStore):
    """STORE=none: your app keeps no shared state, so nothing starts."""

    name = "none"

    def app_env(self) -> dict[str, str]:
        return {}

    def details(self) -> dict[str, Any]:
        return {"name": self.name, "process": None, "shared": False}


class RedisStore(LocalStore):
    name = "redis"
    uses_port = True

    def preflight(self) -> None:
        self.binary = find_binary("redis-server")

    # Any local user can reach 127.0.0.1: a password generated per run, and no CONFIG or
    # DEBUG (CONFIG SET dir + SAVE is how an open Redis writes files where it likes).
    LOCKED = ("CONFIG", "DEBUG", "MODULE", "SHUTDOWN")

    def __init__(self, run: StoreRun) -> None:
        super().__init__(run)
        self.password = secrets.token_hex(16)  # in a 0600 file and replicas' environments
        self.runs_as = "not started"

    def prepare(self) -> None:
        home = self.run.tmp / "redis"
        home.mkdir(mode=0o700, exist_ok=True)
        self.conf = home / "redis.conf"
        fd = os.open(self.conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"requirepass {self.password}\nprotected-mode yes\n")
            fh.writelines(f'rename-command {c} ""\n' for c in self.LOCKED)

    def argv(self) -> list[str]:
        # No persistence: the data lives for one run.
        return [
            *(self.exe, str(self.conf), "--port", str(self.run.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            *("--dir", str(self.run.tmp / "redis")),
        ]

    def serve(self) -> None:
        argv, self.runs_as = as_unprivileged(self.argv(), [self.exe], passes=(self.run.tmp,))
        if self.runs_as == privileges.USER:  # its 0700 directory and 0600 file, its own
            privileges.give(self.conf.parent)
            privileges.give(self.conf)
        self.process = self.run.spawn("store", argv)
        ask = f"AUTH {self.password}\r\nPING\r\n".encode()
        self._wait(lambda: _ask(self.run.port, ask).startswith(b"+OK\r\n+PONG"), "PING")

    def app_env(self) -> dict[str, str]:
        url = f"redis://:{self.password}@127.0.0.1:{self.run.port}/0"
        return {**super().app_env(), "APP_REDIS_URL": url}

    def details(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "binary": self.binary,
            "version": version([self.exe, "--version"]),
            "persistence": "none",
            "auth": "password generated per run (in a 0600 file), 127.0.0.1 only; "
            f"{', '.join(self.LOCKED)} disabled",
            "runs_as": self.runs_as,
        }


class MemcachedStore(LocalStore):
    name = "memcached"
    uses_port = True
    # As docker-compose.yml's memcached service: 64 MB (the kv scenario's 1,000 keys of
    # 256 B need far less), memcached's default 1,024 connections and 4 worker threads
    # (event loops: idle ones cost nothing), UDP off.
    SIZING = ("-U", "0", "-m", "64", "-c", "1024", "-t", "4")

    def preflight(self) -> None:
        self.binary = find_binary("memcached")

    def flags(self) -> list[str]:
        flags = ["-l", "127.0.0.1", "-p", str(self.run.port), *self.SIZING]
        # memcached refuses to run as root; it drops to -u itself after binding.
        return flags + (["-u", "nobody"] if os.geteuid() == 0 else [])

    def serve(self) -> None:
        self.process = self.run.spawn("store", [self.exe, *self.flags()])
        self._wait(lambda: _ask(self.run.port, b"version\r\n").startswith(b"VERSION "), "version")

    def app_env(self) -> dict[str, str]:
        return {**super().app_env(), "APP_MEMCACHED_SERVER": f"127.0.0.1:{self.run.port}"}

    def details(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "binary": self.binary,
            "version": version([self.exe, "-V"]),
            "flags": self.flags(),
            "auth": "none (ASCII protocol; loopback only)",
        }


# PostgreSQL's settings on both runtimes (docker-compose.yml repeats them). Not durable,
# like Redis without persistence: the data lives for one run, and a commit should cost
# what the store does, not what this host's disk does.
POSTGRES_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "shared_buffers": "64MB",
}


def max_connections(s: Settings) -> int:
    """PostgreSQL connections for every replica's pools at the largest N (the app's pool
    holds up to max(4, threads) per process), plus a margin; never below the default."""
    return max(100, max(s.sweep) * s.workers * max(4, s.threads) + 10)


class PostgresStore(LocalStore):
    """PostgreSQL 15: a fresh cluster per run in the run's temporary directory, run as the
    `postgres` OS user when hscale is root (the server refuses root), else as this user.

    Authentication: SCRAM with a password generated per run, for the one role `hscale`,
    only over 127.0.0.1 (no other pg_hba line, so no superuser login at all). Trust on
    loopback would let any local user of the host into the benchmark's database; SCRAM
    costs once per pooled connection, not per request."""

    name = "postgres"
    uses_port = True
    ROLE = DATABASE = "hscale"
    OS_USER = "postgres"

    def __init__(self, run: StoreRun) -> None:
        super().__init__(run)
        self.password = secrets.token_hex(16)  # per run; only ever in environments
        self.home: Path | None = None
        self.outside: Path | None = None  # a home outside the run's tmp dir, if needed

    def preflight(self) -> None:
        self.binary = find_binary("postgres")
        self.initdb = sibling(self.binary, "initdb")
        self.psql = sibling(self.binary, "psql")
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(self.OS_USER)
            except KeyError:
                raise UsageError(
                    "the `postgres` OS user is missing (postgres refuses to run as root): "
                    "install it with `apt-get install postgresql`"
                ) from None

    def settings(self) -> dict[str, str]:
        return {**POSTGRES_SETTINGS, "max_connections": str(max_connections(self.run.settings))}

    @property
    def data(self) -> Path:
        assert self.home is not None, "prepare() makes the cluster first"
        return self.home / "data"

    def bootstrap_sql(self) -> str:
        """Run in single-user mode before the server first listens: the app's role and
        database, with no superuser password to manage and no client needed."""
        return (
            f"CREATE ROLE {self.ROLE} LOGIN PASSWORD '{self.password}';\n"
            f"CREATE DATABASE {self.DATABASE} OWNER {self.ROLE};\n"
        )

    def hba(self) -> str:
        """pg_hba.conf: one role, one database, loopback TCP, the run's password."""
        return f"host {self.DATABASE} {self.ROLE} 127.0.0.1/32 scram-sha-256\n"

    def prepare(self) -> None:
        self.home = self._make_home()
        data = self.data
        log = self.run.logs / "store-setup.log"
        self._setup(
            [self.initdb, "-D", str(data), "--no-sync", "--no-locale", "-E", "UTF8"]
            + ["-U", "postgres", "--auth=reject"],
            log,
        )
        single = [self.exe, "--single", "-D", str(data), "-c", "fsync=off", "postgres"]
        self._setup(single, log, stdin=self.bootstrap_sql())
        (data / "pg_hba.conf").write_text(f"# hscale's only way in:\n{self.hba()}")

    def serve(self) -> None:
        assert self.home is not None
        argv = [self.exe, "-D", str(self.data), "-p", str(self.run.port), "-k", str(self.home)]
        argv += ["-c", "listen_addresses=127.0.0.1"]
        for key, value in self.settings().items():
            argv += ["-c", f"{key}={value}"]
        self.process = self.run.spawn("store", self._as_owner(argv))
        self._wait(self._query, "SELECT 1")

    def app_env(self) -> dict[str, str]:
        dsn = f"postgresql://{self.ROLE}:{self.password}@127.0.0.1:{self.run.port}/{self.DATABASE}"
        return {**super().app_env(), "APP_POSTGRES_DSN": dsn}

    def details(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "binary": self.binary,
            "version": version([self.exe, "--version"]),
            "os_user": self.OS_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())[0],
            "settings": self.settings(),
            "auth": "scram-sha-256, role hscale, password generated per run, 127.0.0.1 only",
        }

    def halt(self) -> None:
        """Fast shutdown (SIGINT to the postmaster: backends end, one checkpoint), then
        whatever is left of the process group."""
        if self.process is not None and self.process.alive() and self.home is not None:
            with contextlib.suppress(OSError, ValueError, ProcessLookupError):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.popen.wait(timeout=10)
        super().halt()

    def stop(self) -> None:
        self.halt()
        if self.outside is not None:
            shutil.rmtree(self.outside, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------
    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.OS_USER, "--", *argv] if os.geteuid() == 0 else argv

    def _make_home(self) -> Path:
        """The cluster's directory: in the run's tmp dir, owned by the server's user. When
        that user cannot reach it (a private TMPDIR, such as pytest's 0700 directories,
        hides it), a directory of its own under /tmp, removed at stop."""
        home = self.run.tmp / "postgres"
        home.mkdir()
        if os.geteuid() != 0:
            return home
        user = pwd.getpwnam(self.OS_USER)
        os.chown(home, user.pw_uid, user.pw_gid)
        self.run.tmp.chmod(0o711)  # traversable, not listable, by other users
        if self._reachable(home):
            return home
        home.rmdir()
        self.outside = Path(tempfile.mkdtemp(prefix=f"hscale-{self.run.run_id}-pg-", dir="/tmp"))
        os.chown(self.outside, user.pw_uid, user.pw_gid)
        if not self._reachable(self.outside):
            raise StartupError(f"the {self.OS_USER} user cannot write to {self.outside}")
        return self.outside

    def _reachable(self, path: Path) -> bool:
        argv = self._as_owner(["test", "-w", str(path), "-a", "-x", str(path)])
        return subprocess.run(argv, capture_output=True).returncode == 0

    def _setup(self, argv: list[str], log: Path, stdin: str | None = None) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            done = subprocess.run(
                self._as_owner(argv),
                input=stdin.encode() if stdin else None,
                stdin=None if stdin else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(self.run.run_id),
                timeout=120,
            )
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
            name = Path(argv[0]).name
            raise StartupError(f"{name} failed with code {done.returncode}; log {log}:\n{tail}")

    def _query(self) -> bool:
        """A real query, as the app's role, over TCP, with the run's password."""
        argv = [self.psql, "-X", "-w", "-tA", "-h", "127.0.0.1", "-p", str(self.run.port)]
        argv += ["-U", self.ROLE, "-d", self.DATABASE, "-c", "SELECT 1"]
        env = child_env(self.run.run_id, {"PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "2"})
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=10)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0 and done.stdout.strip() == "1"


def _ask(port: int, request: bytes) -> bytes:
    """One request to a text-protocol server on 127.0.0.1, the first bytes of its reply."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(request)
            return s.recv(64)
    except OSError:
        return b""


def create(run: StoreRun) -> LocalStore:
    """The local server of STORE, as its registry entry (hscale/stores.py) names it."""
    return stores.STORES[run.settings.store].local_class()(run)
