"""hscale.cgroups on this machine: a CPU quota is enforced, counted and cleaned up."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from hscale import cgroups
from hscale.analysis.components import cpu_usage
from hscale.cgroups import CpuGroup

MODE, REASON = cgroups.detect()
pytestmark = pytest.mark.skipif(MODE == "none", reason=f"no cgroup CPU controller: {REASON}")

BUSY = "while True:\n    pass\n"


@pytest.fixture
def make_group() -> Iterator:
    """CpuGroups under a test-only parent `hscale-test-<random>`; all removed after."""
    parent = f"hscale-test-{secrets.token_hex(4)}"
    made: list[CpuGroup] = []
    procs: list[subprocess.Popen] = []

    def make(name: str, cpus: float | None, busy: bool = True):
        group = CpuGroup(MODE, f"{parent}/{name}", cpus)
        made.append(group)
        proc = None
        if busy:
            proc = subprocess.Popen(
                group.wrap([sys.executable, "-c", BUSY]),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
            )
            procs.append(proc)
            wait_until(lambda: proc.pid in group.pids(), what="the busy loop to join its group")
        return group, proc

    yield make
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    for group in made:
        group.remove()


def wait_until(condition, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def measure(group: CpuGroup, seconds: float) -> tuple:
    a, t0 = group.counters(), time.monotonic()
    time.sleep(seconds)
    b, t1 = group.counters(), time.monotonic()
    return a, b, t1 - t0


def test_detect_matches_the_filesystem():
    if MODE == "v2":
        assert (cgroups.ROOT / "cgroup.controllers").exists()
    else:
        assert any((cgroups.ROOT / c / "cpu.cfs_quota_us").exists() for c in ("cpu", "cpu,cpuacct"))


def test_quota_is_written(make_group):
    group, _ = make_group("quota", 0.2, busy=False)
    if MODE == "v2":
        assert (group.dirs[0] / "cpu.max").read_text().split() == ["20000", "100000"]
    else:
        assert (group.dirs[0] / "cpu.cfs_quota_us").read_text().strip() == "20000"
        assert (group.dirs[0] / "cpu.cfs_period_us").read_text().strip() == "100000"


def test_busy_loop_is_held_to_its_quota_and_throttled(make_group):
    group, proc = make_group("busy", 0.2)
    time.sleep(0.3)  # past start-up
    a, b, seconds = measure(group, 2.0)
    assert proc.poll() is None
    cores = (b.cpu_s - a.cpu_s) / seconds
    assert 0.1 <= cores <= 0.3, f"{cores:.3f} CPU used under a 0.2 CPU quota"
    assert b.nr_periods - a.nr_periods >= 10  # ~20 periods of 100 ms in 2 s
    assert b.nr_throttled - a.nr_throttled >= 5, "a busy loop at 0.2 CPU must be throttled"
    assert b.throttled_s - a.throttled_s > 0.5  # waits ~80 ms of every 100 ms period

    # the same counters through analysis.components, as a sweep point reports them
    got = cpu_usage({"r": a}, {"r": b}, seconds, {"r": 0.2}, {"r": "replica"})["r"]
    assert 0.5 <= got["util_of_budget"] <= 1.5
    assert got["throttled_periods"] >= 0.5


def test_children_stay_in_the_group():
    """Everything the wrapped command forks is inside the budget from the start."""
    group = CpuGroup(MODE, f"hscale-test-{secrets.token_hex(4)}/tree", 0.2)
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        "subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(group.wrap([sys.executable, "-c", code]), start_new_session=True)
    try:
        wait_until(lambda: len(group.pids()) == 3, what="parent and two children in the group")
        time.sleep(0.3)
        a, b, seconds = measure(group, 1.5)
        cores = (b.cpu_s - a.cpu_s) / seconds
        assert cores <= 0.3, f"two busy children used {cores:.2f} CPU under a 0.2 CPU quota"
    finally:
        group.remove()
        proc.wait(timeout=10)
    assert all(not d.exists() for d in group.dirs)


def test_no_quota_means_accounting_only(make_group):
    group, _ = make_group("free", None)
    if MODE == "v2":
        assert (group.dirs[0] / "cpu.max").read_text().split()[0] == "max"
    else:
        assert (group.dirs[0] / "cpu.cfs_quota_us").read_text().strip() == "-1"
    time.sleep(0.2)
    a, b, seconds = measure(group, 1.0)
    assert (b.cpu_s - a.cpu_s) / seconds > 0.3  # a busy loop counted, well above a quota
    assert b.nr_throttled == a.nr_throttled


def test_remove_kills_and_removes_group_and_parent(make_group):
    group, proc = make_group("doomed", 0.2)
    parent_dirs = {d.parent for d in group.dirs}
    assert all(d.is_dir() for d in group.dirs)
    group.remove()
    assert proc.wait(timeout=5) == -signal.SIGKILL
    assert all(not d.exists() for d in group.dirs), group.dirs
    assert all(not p.exists() for p in parent_dirs), "the empty hscale-* parent must go too"
    group.remove()  # a second time is harmless


def test_remove_keeps_parent_while_a_sibling_lives(make_group):
    first, _ = make_group("one", 0.2)
    second, proc2 = make_group("two", 0.2)
    first.remove()
    assert all(not d.exists() for d in first.dirs)
    assert all(d.is_dir() for d in second.dirs)
    assert proc2.poll() is None
    second.remove()
    assert all(not d.parent.exists() for d in second.dirs)
