"""Stopping child process groups side by side (hscale.procs.stop_all), with real
processes (each takes a second to drain on SIGTERM), and the CPU of a process tree."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from hscale.procs import ManagedProcess, child_env, stop_all, tree_cpu_seconds

# Drains for a second on SIGTERM, quits at once on SIGINT, as gunicorn's master does.
DRAINING = "trap 'sleep 1; exit 0' TERM; trap 'exit 0' INT; while :; do sleep 0.05; done"


def spawn(tmp_path: Path, count: int) -> list[ManagedProcess]:
    env = child_env("test-stop-all")
    procs = [
        ManagedProcess(f"p{i}", ["sh", "-c", DRAINING], tmp_path / f"p{i}.log", env)
        for i in range(count)
    ]
    time.sleep(0.3)  # the traps are set
    return procs


def test_groups_drain_side_by_side_not_one_after_another(tmp_path: Path) -> None:
    procs = spawn(tmp_path, 3)
    t0 = time.monotonic()
    stop_all(procs)
    took = time.monotonic() - t0
    assert not any(p.running() for p in procs)
    assert 0.9 < took < 2.5, f"3 drains of 1 s took {took:.2f} s (in a row: 3 s or more)"


def test_a_quick_first_signal_and_sigkill_after_the_timeout(tmp_path: Path) -> None:
    quick = spawn(tmp_path, 2)
    t0 = time.monotonic()
    stop_all(quick, first=signal.SIGINT)
    assert time.monotonic() - t0 < 0.8 and not any(p.running() for p in quick)
    stubborn = ManagedProcess(
        "stubborn", ["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"],
        tmp_path / "stubborn.log", child_env("test-stop-all"),
    )  # fmt: skip
    time.sleep(0.3)
    t0 = time.monotonic()
    stop_all([stubborn], timeout=0.5)
    assert 0.4 < time.monotonic() - t0 < 3.0 and not stubborn.running()
    assert stubborn.popen.returncode == -signal.SIGKILL


# Burns about 0.6 s of CPU in a forked child, reaps it, then idles: as Locust's master
# does with the workers it forks (--processes), which may quit before the last read.
FORK_BURN_REAP = """
import os, time
pid = os.fork()
if pid == 0:
    end = time.process_time() + 0.6
    while time.process_time() < end:
        pass
    os._exit(0)
os.waitpid(pid, 0)
print("reaped", flush=True)
time.sleep(30)
"""


def test_tree_cpu_keeps_a_child_that_exited_and_was_reaped(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "forks", [sys.executable, "-c", FORK_BURN_REAP], tmp_path / "forks.log",
        child_env("test-tree-cpu"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while "reaped" not in proc.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(proc.tree()) == 1  # only the parent is left
        assert tree_cpu_seconds(proc) >= 0.5  # the child's 0.6 s is still counted
    finally:
        proc.stop()
