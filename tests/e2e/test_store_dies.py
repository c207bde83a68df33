"""The store dies while a trial measures: that trial is kept in summary.json, marked not
valid with the reason, the sweep stops with exit code 1 and a final status, and nothing
is left running."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psutil
import pytest
from hscale_testkit import Ports, clean_up_run, run_dirs, run_hscale, wait_no_marked_processes

pytestmark = pytest.mark.e2e


def kill_store_when_measuring(results: Path, port: int, stop: threading.Event) -> None:
    """SIGKILL the run's redis-server once the first trial's measured window is open."""
    while not stop.is_set():
        for phase in results.glob("*/points/n1/t1/phase.json"):
            try:
                measuring = json.loads(phase.read_text())["phase"] == "measure"
            except (OSError, ValueError, KeyError):
                measuring = False
            if measuring:
                time.sleep(1.0)
                for proc in psutil.process_iter(["name", "cmdline"]):
                    if proc.info["name"] == "redis-server" and str(port) in " ".join(
                        proc.info["cmdline"] or []
                    ):
                        proc.kill()
                return
        time.sleep(0.1)


def test_a_store_that_dies_mid_trial_marks_it_and_stops(tmp_path: Path) -> None:
    results, ports = tmp_path / "results", Ports(2)
    args = ["bench", "--sweep", "1 2", "--scenario", "counter", "--trials", "1"]
    args += ["--duration", "4", "--warmup", "1", "--warmup-trial", "0", "--ci-target", "0"]
    stop = threading.Event()
    killer = threading.Thread(
        target=kill_store_when_measuring, args=(results, ports.store_port, stop), daemon=True
    )
    killer.start()
    done = run_hscale(
        [*args, "--results", str(results), *ports.args()], tmpdir=tmp_path / "tmp", timeout=300
    )
    stop.set()
    (run,) = run_dirs(results)
    try:
        assert done.returncode == 1, done.stderr[-3000:]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "failed"
        assert "store (redis) exited during the measurement of N=1 trial 1" in summary["error"]
        (trial,) = summary["trials"]
        assert not trial["valid"] and "store (redis) exited during measurement" in trial["notes"]
        assert trial["consistency"] is None and trial["failures"] > 0
        assert all(c["cpu_cores"] >= 0 for c in trial["components"].values())
        assert wait_no_marked_processes(run.name, grace=1.0) == []
    finally:
        clean_up_run(run.name)
