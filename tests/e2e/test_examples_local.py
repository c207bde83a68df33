"""The examples as a new user runs them on the local runtime (small loads): each sweeps
to the end with its store, the split proved by nginx, stateless-redis with a Locust file
that `hscale init` wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hscale_testkit import ROOT, Ports, clean_up_run, run_dirs, run_hscale, wait_no_marked_processes

pytestmark = pytest.mark.e2e

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hscale-cache")


def bench(tmp_path: Path, cache: Path, *args: str) -> tuple[int, str, Path | None]:
    results = tmp_path / "results"
    argv = ["bench", "--sweep", "1 2", "--trials", "1", "--duration", "3", "--warmup", "1"]
    argv += ["--warmup-trial", "0", "--ci-target", "0", "--results", str(results)]
    done = run_hscale(
        [*argv, *args, *Ports(2).args()], tmpdir=tmp_path / "tmp", timeout=900,
        env={"HSCALE_CACHE": str(cache)},
    )  # fmt: skip
    runs = run_dirs(results)
    return done.returncode, done.stderr, runs[0] if runs else None


def test_hot_row_sweeps_on_postgres(tmp_path: Path, cache: Path) -> None:
    """(stateless-redis sweeps below with a generated Locust file, and with its own in the
    3-node cluster's sweep.)"""
    code, err, run = bench(
        tmp_path, cache, "--app", str(EXAMPLES / "hot-row"), "--store", "postgres"
    )
    assert run is not None, err[-2000:]
    try:
        assert code == 0, err[-3000:]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["target"]["kind"] == "project"
        two = next(t for t in summary["trials"] if t["replicas"] == 2)
        assert set(two["per_replica_requests"]) == {"replica-1", "replica-2"}
        assert two["failures"] == 0 and two["requests"] > 50
        assert wait_no_marked_processes(run.name, grace=1.0) == []
    finally:
        clean_up_run(run.name)


def test_an_app_with_a_generated_locustfile(tmp_path: Path, cache: Path) -> None:
    """From outside the repository: copy the app without its Locust file, let `hscale
    init` write one from the URL map, and sweep with it unchanged."""
    project = tmp_path / "myapp"
    shutil.copytree(EXAMPLES / "stateless-redis", project)
    (project / "locustfile.py").unlink()
    init = run_hscale(["init", str(project)], env={"HSCALE_CACHE": str(cache)}, timeout=600)
    assert init.returncode == 0, init.stderr
    assert "@task" in (project / "locustfile.py").read_text()
    code, err, run = bench(tmp_path, cache, "--app", str(project), "--store", "redis")
    assert run is not None, err[-2000:]
    try:
        assert code == 0, err[-3000:]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["target"]["kind"] == "project"
        assert summary["target"]["locustfile"] == str(project / "locustfile.py")
        assert all(t["failures"] == 0 for t in summary["trials"])
        two = next(t for t in summary["trials"] if t["replicas"] == 2)
        assert set(two["per_replica_requests"]) == {"replica-1", "replica-2"}
        assert two["requests"] > 50
        assert wait_no_marked_processes(run.name, grace=1.0) == []
    finally:
        clean_up_run(run.name)
