"""Child processes of a run: started in their own session (so a terminal's Ctrl-C reaches
the harness, which then tears down in order), tagged with the run id in their
environment, and stopped as a whole process group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import requests

RUN_MARKER = "HSCALE_RUN_ID"


class StartupError(RuntimeError):
    """A component did not come up; the message says which and where its log is."""


def dies_with_us() -> list[str]:
    """A prefix that makes a child die when hscale does, SIGKILL included (the kernel's
    parent-death signal, set by util-linux's setpriv), where the OS allows: Linux with
    setpriv, and a child started by the main thread (the signal follows the thread that
    started the child: a fault's thread, gone in a moment, would take its child along)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


class ManagedProcess:
    def __init__(
        self, name: str, argv: list[str], log: Path, env: dict[str, str], cwd: Path | None = None
    ) -> None:
        self.name, self.log = name, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._logfh = open(log, "ab")  # noqa: SIM115  (closed in stop())
        self.popen = subprocess.Popen(
            [*dies_with_us(), *argv],
            stdout=self._logfh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group (graceful drain), SIGKILL whatever outlives timeout."""
        stop_all([self], timeout)

    def running(self) -> bool:
        """The process or anything left in its group."""
        return self.popen.poll() is None or _group_alive(self.pid)

    def close(self) -> None:
        self.popen.poll()
        self._logfh.close()

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_all(
    procs: Iterable[ManagedProcess], timeout: float = 10.0, first: int = signal.SIGTERM
) -> None:
    """Stop process groups side by side: `first` (SIGTERM: drain gracefully) to all, then
    SIGKILL to whatever outlives timeout."""
    procs = list(procs)
    for sig, wait in ((first, timeout), (signal.SIGKILL, 5.0)):
        live = [p for p in procs if p.running()]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)
        deadline = time.monotonic() + wait
        while live and time.monotonic() < deadline:
            time.sleep(0.05)
            live = [p for p in live if p.running()]
    for p in procs:
        p.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def child_env(run_id: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, RUN_MARKER: run_id, **(extra or {})}
    return env


def leftovers(run_id: str) -> list[psutil.Process]:
    """Processes still carrying this run's marker in their environment."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(RUN_MARKER) == run_id:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def kill_leftovers(run_id: str) -> list[str]:
    """Kill and describe any process of the run that teardown missed."""
    described = []
    for proc in leftovers(run_id):
        try:
            described.append(f"{proc.pid} {' '.join(proc.cmdline())[:80]}")
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return described


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on host now (the kernel's pick; another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def listeners(port: int) -> set[int]:
    """The processes listening on a TCP port (those this user may see)."""
    found = set()
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            found.add(conn.pid or 0)
    return found


def wait_http(
    url: str, proc: ManagedProcess, timeout: float = 20.0, ok: range = range(200, 201)
) -> None:
    """Poll url until its status is in `ok` and the answer came from `proc` (its process
    tree listens on the port: not another program, or another run, that holds it); fail
    fast if the process dies meanwhile, and name the log with its last lines either way."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    port = urlsplit(url).port
    while time.monotonic() < deadline:
        if not proc.alive():
            raise StartupError(
                f"{proc.name} exited with code {proc.popen.returncode} while starting; "
                f"log {proc.log}:\n{proc.log_tail()}"
            )
        try:
            r = requests.get(url, timeout=1.0, allow_redirects=False)
            if r.status_code in ok:
                holders = listeners(port) if port else set()
                if not holders or holders & {p.pid for p in proc.tree()}:
                    return
                last = f"port {port} is held by process(es) {sorted(holders)}, not {proc.name}"
            else:
                last = f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise StartupError(
        f"{proc.name} not ready at {url} after {timeout:g} s ({last}); log {proc.log}:\n"
        f"{proc.log_tail()}"
    )


def wait_tcp(port: int, proc: ManagedProcess, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise StartupError(
                f"{proc.name} exited while starting; log {proc.log}:\n{proc.log_tail()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise StartupError(
        f"{proc.name} not listening on port {port} after {timeout:g} s; log {proc.log}"
    )


def cpu_seconds(processes: Iterable[psutil.Process], reaped: bool = False) -> float:
    """User+system CPU of live processes (those that exit meanwhile count as nothing).

    With `reaped`, each also adds the CPU of the children it has waited for: summed over
    a whole process tree, a child that exits and is reaped moves from its own counter to
    its parent's, so the total never falls (not for unrelated processes, whose reaped
    children may be counted elsewhere already)."""
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
            if reaped:
                total += t.children_user + t.children_system
        except psutil.NoSuchProcess:
            continue
    return total


def tree_cpu_seconds(proc: ManagedProcess) -> float:
    """CPU of a process and all its descendants, those already exited and reaped too
    (where no cgroup counts it): Locust's workers may quit before the window's last read."""
    return cpu_seconds(proc.tree(), reaped=True)
