"""Stopping child process groups side by side (hscale.procs.stop_all), with real
processes: each takes a second to drain on SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from hscale.procs import ManagedProcess, child_env, stop_all

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
