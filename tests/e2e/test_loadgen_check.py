"""`hscale loadgen-check` on the local runtime with a small load: wrk and hscale's Locust
in alternating windows at N = 1 and 2, a complete loadgen_check.json, nothing left, and
the sweep's line that states it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hscale_testkit import Ports, clean_up_run, run_dirs, run_hscale, wait_no_marked_processes

from hscale.analysis import precision
from hscale.loadgen_check import FILE, latest_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make setup)"),
]


def test_wrk_and_locust_side_by_side(tmp_path: Path) -> None:
    results = tmp_path / "results"
    args = ["loadgen-check", "--replicas", "2", "--trials", "2", "--duration", "2"]
    args += ["--warmup", "1", "--runtime", "local", "--results", str(results), *Ports(2).args()]
    done = run_hscale(args, tmpdir=tmp_path / "tmp", timeout=240)
    (run,) = run_dirs(results)
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        doc = json.loads((run / FILE).read_text())
        assert doc["status"] == "complete" and doc["runtime"] == "local" and doc["replicas"] == 2
        result = doc["result"]
        assert [p["replicas"] for p in result["points"]] == [1, 2]
        for p in result["points"]:
            assert p["rounds"] == 2 and len(p["pairs"]) == 2
            # Both generators drove the stack; wrk (C, one thread) is the lighter one.
            assert p["wrk"]["rps"] > 20 and p["locust"]["rps"] > 20
            assert p["wrk"]["loadgen_cores"] < p["locust"]["loadgen_cores"]
            assert p["wrk"]["replica_ms"] > 0 and p["locust"]["replica_ms"] > 0
            # Loose: one stack, one request, so the two cannot be far apart.
            assert 0.5 < p["ratio"]["ratio"] < 2
        assert result["e_bias"]["low"] < result["e_bias"]["ratio"] < result["e_bias"]["high"]
        assert "hscale / wrk" in done.stdout and "E(2), hscale's over wrk's" in done.stdout
        assert wait_no_marked_processes(run.name, grace=1.0) == []
        # A later sweep on this host, runtime and split states it.
        found = latest_for(results, "local", "0")
        assert found is not None and found["run_id"] == run.name
        points = [
            {"replicas": n, "components": {"loadgen": {"cpu_cores": 0.1 * n, "demand_ms": 0.5}}}
            for n in (1, 2)
        ]
        lines = precision.describe({"points": points, "loadgen_check": found})
        assert any(run.name in x and "E(2) reads" in x for x in lines), lines
    finally:
        clean_up_run(run.name)
