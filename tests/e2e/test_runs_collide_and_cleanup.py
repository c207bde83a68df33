"""Two runs on the same ports: the second refuses at once, naming the first. A harness
killed with SIGKILL leaves its stack running; `hscale cleanup` removes all of it and its
locks are free again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from hscale_testkit import (
    Ports,
    cgroup_dirs,
    clean_up_run,
    hscale_cmd,
    hscale_env,
    run_dirs,
    run_hscale,
    wait_no_marked_processes,
    with_test_knobs,
)

from hscale.procs import RUN_MARKER

pytestmark = pytest.mark.e2e


def start_bench(tmp_path: Path, results: Path, ports: Ports) -> subprocess.Popen[str]:
    args = ["bench", "--sweep", "1 2", "--scenario", "json", "--trials", "1", "--duration", "60"]
    args += ["--warmup", "1", "--warmup-trial", "0", "--results", str(results), *ports.args()]
    return subprocess.Popen(
        [*hscale_cmd(), *with_test_knobs(args)], env=hscale_env(tmp_path / "tmp"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip


def wait_measuring(results: Path, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for phase in results.glob("*/points/n1/t1/phase.json"):
            try:
                if json.loads(phase.read_text())["phase"] == "measure":
                    return phase.parents[3].resolve()  # not the `latest` link
            except (OSError, ValueError, KeyError):
                pass
        time.sleep(0.2)
    raise AssertionError("the first run never started measuring")


def test_a_second_run_on_the_same_ports_refuses_and_cleanup_clears_a_killed_one(
    tmp_path: Path,
) -> None:
    results, ports = tmp_path / "results", Ports(2)
    first = start_bench(tmp_path, results, ports)
    run = None
    try:
        run = wait_measuring(results)
        # The same ports, another results directory: refused before anything starts.
        t0 = time.monotonic()
        second = run_hscale(
            ["bench", "--sweep", "1 2", "--results", str(tmp_path / "other"), *ports.args()],
            tmpdir=tmp_path / "tmp2", timeout=60,
        )  # fmt: skip
        assert second.returncode == 2 and time.monotonic() - t0 < 20
        assert f"port {ports.port} (PORT, nginx) is in use by run {run.name}" in second.stderr
        assert run_dirs(tmp_path / "other") == []
        # The harness dies as under the OOM killer. Its own children (replicas, nginx's
        # master, the store, Locust) die with it (the parent-death signal); what they
        # leave (nginx's workers, cgroups, temporary directories) is cleanup's.
        harness = psutil.Process(first.pid)
        children = harness.children()
        assert len(children) >= 3, children  # at least the replica, nginx and the store
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        deadline = time.monotonic() + 10
        while [c for c in children if _alive(c)]:
            assert time.monotonic() < deadline, [c.name() for c in children if _alive(c)]
            time.sleep(0.1)
        done = run_hscale(["cleanup", "--run", run.name], tmpdir=tmp_path / "tmp", timeout=60)
        assert done.returncode == 0, done.stderr
        assert "removed" in done.stdout
        assert wait_no_marked_processes(run.name, grace=3.0) == []
        assert cgroup_dirs(run.name) == []
        assert not list((tmp_path / "tmp").glob(f"hscale-{run.name}-*"))
        # The kernel dropped the dead harness's locks: the ports are free for a new run.
        again = run_hscale(
            ["bench", "--sweep", "1", "--scenario", "json", "--trials", "1", "--duration", "2",
             "--warmup", "1", "--warmup-trial", "0", "--ci-target", "0",
             "--results", str(tmp_path / "again"), *ports.args()],
            tmpdir=tmp_path / "tmp3", timeout=180,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr[-2000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        if run is not None:
            clean_up_run(run.name)
        for r in run_dirs(tmp_path / "again"):
            clean_up_run(r.name)


def test_cleanup_leaves_a_live_run_alone(tmp_path: Path) -> None:
    """A process marked with a run id whose harness is alive (registered) is not touched."""
    from hscale import runlock

    run_id = "20261130-000000-live-abcdef"
    lock = runlock.RunLock(run_id)
    lock.register(project="hscale20261130000000liveabcdef")
    proc = subprocess.Popen(["sleep", "60"], env={**os.environ, RUN_MARKER: run_id})
    try:
        done = run_hscale(["cleanup", "--run", run_id], timeout=60)
        assert done.returncode == 0 and proc.poll() is None
    finally:
        proc.kill()
        lock.release()


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
