"""Interrupting a real sweep: Ctrl-C (SIGINT to the foreground process group, as a
terminal sends it), SIGTERM and SIGHUP. The finished points are kept, the summary says
"interrupted", the exit code is 130, and no process or cgroup of the run is left."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hscale_testkit import (
    ROOT,
    TEST_KNOBS,
    Ports,
    cgroup_dirs,
    clean_up_run,
    hscale_cmd,
    hscale_env,
    read_json,
    run_dirs,
    stop_process_group,
    wait_no_marked_processes,
)

pytestmark = pytest.mark.e2e

EXIT_INTERRUPTED = 130


@dataclass
class Bench:
    popen: subprocess.Popen
    results: Path
    tmpdir: Path
    log: Path

    def run_path(self) -> Path | None:
        dirs = run_dirs(self.results)
        return dirs[0] if dirs else None

    def summary(self) -> dict | None:
        path = self.run_path()
        return read_json(path / "summary.json") if path else None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_until(self, condition, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.popen.poll() is not None:
                pytest.fail(
                    f"hscale exited ({self.popen.returncode}) before {what}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}:\n{self.output()}")
            time.sleep(0.1)

    def signal_group(self, sig: int) -> None:
        """What a terminal does: the signal to the whole foreground process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


@pytest.fixture
def start_bench(tmp_path) -> Iterator:
    started: list[Bench] = []

    def start(sweep: str = "1 2 3", duration: str = "6", sigint_ignored: bool = False) -> Bench:
        results, tmpdir, log = tmp_path / "results", tmp_path / "tmp", tmp_path / "hscale.log"
        ports = Ports(max(int(n) for n in sweep.split()))
        argv = [
            *hscale_cmd(),
            "bench",
            *(x for item in TEST_KNOBS.items() for x in item),
            "--sweep",
            sweep,
            "--scenario",
            "json",
            "--duration",
            duration,
            "--warmup",
            "1",
            "--trials",
            "1",
            "--results",
            str(results),
            *ports.args(),
        ]
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=hscale_env(tmpdir),
                cwd=ROOT,
                start_new_session=True,  # its own group, as a shell job would be
                # `cmd &` in a non-interactive shell starts cmd with SIGINT ignored
                preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
                if sigint_ignored
                else None,
            )
        bench = Bench(popen, results, tmpdir, log)
        started.append(bench)
        return bench

    yield start
    for bench in started:  # whatever the test asserted, leave nothing running
        stop_process_group(bench.popen)
        for run in run_dirs(bench.results):
            clean_up_run(run.name)


def finished_points(bench: Bench) -> int:
    s = bench.summary()
    return len(s["points"]) if s else 0


def assert_clean_interrupt(bench: Bench, points: int, cause: str, strict: bool = True) -> dict:
    """Exit 130, summary "interrupted" with `points` finished points, nothing left behind."""
    try:
        code = bench.popen.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hscale did not exit within 90 s of the signal:\n{bench.output()}")
    run = bench.run_path()
    assert run is not None
    run_id = run.name
    # nothing of the run may outlive hscale, whatever else went wrong: report it all
    problems = []
    if code != EXIT_INTERRUPTED:
        problems.append(f"exit code {code}, not {EXIT_INTERRUPTED}")
    if left := wait_no_marked_processes(run_id, grace=1.0):
        problems.append(f"processes of the run left running: {left}")
    if groups := cgroup_dirs(run_id):
        problems.append(f"cgroups left: {[str(g) for g in groups]}")
    if temps := [p.name for p in bench.tmpdir.glob(f"hscale-{run_id}*")]:
        problems.append(f"temporary dirs left: {temps}")
    assert not problems, "\n".join(problems) + f"\n--- hscale output:\n{bench.output()}"

    summary = json.loads((run / "summary.json").read_text())  # valid JSON, complete file
    assert summary["schema_version"] == 2
    assert summary["status"] == "interrupted", summary
    assert summary["ended_at"]
    assert cause in summary["error"] and f"{points} finished trial" in summary["error"]
    if strict:
        assert summary["leftover_processes"] == [], "teardown missed processes"
    assert [p["replicas"] for p in summary["points"]] == list(range(1, points + 1))
    for p in summary["points"]:
        assert p["requests"] > 0 and p["throughput_rps"] > 0
        assert isinstance(p["valid"], bool)
    for t in summary["trials"]:
        assert (run / t["raw"] / "locust_stats.csv").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest.get("status") == "interrupted" and manifest.get("ended_at")
    return summary


def test_sigterm_after_the_first_point(start_bench):
    bench = start_bench()
    bench.wait_until(lambda: finished_points(bench) >= 1, "the first point to finish")
    bench.signal_group(signal.SIGTERM)
    assert_clean_interrupt(bench, points=1, cause="SIGTERM")
    assert (bench.run_path() / "throughput.png").is_file()  # drawn from the kept point


def test_ctrl_c_after_the_first_point_even_in_a_job_started_with_sigint_ignored(start_bench):
    """A script's `hscale bench &` inherits SIGINT ignored; Ctrl-C must still stop it (the
    plain Ctrl-C case is this one with nothing ignored, and the repeated one below)."""
    bench = start_bench(sigint_ignored=True)
    bench.wait_until(lambda: finished_points(bench) >= 1, "the first point to finish")
    bench.signal_group(signal.SIGINT)
    assert_clean_interrupt(bench, points=1, cause="SIGINT")
    assert (bench.run_path() / "throughput.png").is_file()


def test_sighup_before_any_point_finished(start_bench):
    """The terminal went away during the first point: nothing to keep, still clean."""
    bench = start_bench()
    bench.wait_until(
        lambda: (
            bench.run_path() is not None
            and (bench.run_path() / "points" / "n1" / "t1" / "phase.json").exists()
        ),
        "the first point's load to start",
    )
    bench.signal_group(signal.SIGHUP)
    assert_clean_interrupt(bench, points=0, cause="SIGHUP")
    assert not (bench.run_path() / "throughput.png").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_repeated_signals_do_not_break_teardown(start_bench, sig):
    """An impatient user (or a supervisor) signals again and again while hscale tears
    down: teardown must still finish, write the summary and leave no process behind."""
    bench = start_bench()
    bench.wait_until(lambda: finished_points(bench) >= 1, "the first point to finish")
    deadline = time.monotonic() + 60
    while bench.popen.poll() is None and time.monotonic() < deadline:
        summary = bench.summary()
        if summary and summary["status"] != "running":
            break  # teardown wrote its final summary: stop signalling
        bench.signal_group(sig)
        time.sleep(0.1)
    # a repeated signal may cut short Locust's own stop; teardown then kills it (strict=False)
    assert_clean_interrupt(bench, points=1, cause=signal.Signals(sig).name, strict=False)
