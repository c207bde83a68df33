"""A sweep that fails: verification refuses the stack, so nothing is measured; exit code 1,
summary "failed" with the error, error.txt with the traceback, nothing left running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hscale_testkit import Ports, clean_up_run, run_dirs, run_hscale, wait_no_marked_processes

pytestmark = pytest.mark.e2e


def test_a_failed_verification_stops_the_sweep_with_exit_1_and_error_txt(tmp_path: Path) -> None:
    results = tmp_path / "results"
    args = ["bench", "--runtime", "local", "--sweep", "1 2", "--scenario", "json"]
    args += ["--trials", "1", "--duration", "2", "--warmup", "1", "--results", str(results)]
    # The replicas inherit the environment: a /work limit of 0 ms makes every /work?ms=1
    # a 400, which verification must refuse before any load runs.
    done = run_hscale(
        [*args, *Ports(2).args()], tmpdir=tmp_path / "tmp", timeout=180,
        env={"APP_WORK_MAX_MS": "0"},
    )  # fmt: skip
    (run,) = run_dirs(results)
    try:
        assert done.returncode == 1, done.stderr[-2000:]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "failed" and "/work?ms=1" in summary["error"]
        assert summary["trials"] == [] and summary["ended_at"]
        assert "Traceback" in (run / "error.txt").read_text()
        assert not (run / "points" / "n1" / "t1").exists()  # no load was sent
        assert wait_no_marked_processes(run.name, grace=1.0) == []
    finally:
        clean_up_run(run.name)
