"""LOADGEN_WORKERS=k: a Locust master and k workers whose tallies are merged exactly.
Locally the workers are processes; on the docker runtime they are containers (compose
profile `loadgen`), checked in tests/docker/test_your_app_docker.py's image sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
from hscale_testkit import Ports, assert_merged_exactly, short_sweep

pytestmark = pytest.mark.e2e


def test_local_processes(tmp_path: Path):
    args = ("--sweep", "2", "--loadgen-workers", "2", *Ports(2).args())
    done, run, summary = short_sweep(tmp_path, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary["status"] == "complete"
    (trial,) = summary["trials"]
    assert_merged_exactly(run, trial, workers=2)
