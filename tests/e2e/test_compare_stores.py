"""`hscale compare-stores` (what `make compare` runs) on the local runtime: redis against
the unshared memory store, two rounds interleaved, then the comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hscale_testkit import (
    Ports,
    clean_up_run,
    run_dirs,
    run_hscale,
    wait_no_marked_processes,
)

pytestmark = pytest.mark.e2e


def window_starts(run: Path) -> list[float]:
    summary = json.loads((run / "summary.json").read_text())
    return [
        json.loads((run / t["raw"] / "tally.json").read_text())["window_start"]
        for t in summary["trials"]
    ]


def test_compare_redis_with_memory(tmp_path):
    results = tmp_path / "results"
    args = ["compare-stores", "--stores", "redis memory", "--scenario", "counter"]
    args += ["--sweep", "1 2", "--trials", "2", "--duration", "3", "--warmup", "1"]
    done = run_hscale(
        [*args, "--results", str(results), *Ports(2).args()], tmpdir=tmp_path / "tmp", timeout=400
    )
    (cdir,) = run_dirs(results)
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        plan = json.loads((cdir / "compare-plan.json").read_text())
        assert plan["stores"] == ["redis", "memory"] and plan["rounds"] == 2
        summaries = {s: json.loads((cdir / s / "summary.json").read_text()) for s in plan["stores"]}
        for store, s in summaries.items():
            assert s["status"] == "complete", (store, s["error"])
            assert [(t["replicas"], t["trial"]) for t in s["trials"]] == [
                (1, 1), (2, 1), (2, 2), (1, 2)
            ]  # fmt: skip
            assert s["trial_plan"]["trials"] == 2
            assert [p["trials"] for p in s["points"]] == [2, 2]
            assert (cdir / store / "report.html").is_file()
        # rounds interleave, the order of stores reversing: redis, memory | memory, redis
        redis, memory = window_starts(cdir / "redis"), window_starts(cdir / "memory")
        assert max(redis[:2]) < min(memory[:2]) and max(memory[2:]) < min(redis[2:])
        # redis is shared and exact; memory diverges at N = 2
        assert summaries["redis"]["consistency"]["consistent"] is True
        counter = summaries["redis"]["consistency"]["counter"]
        assert counter["acknowledged"] <= counter["delta"] <= counter["attempts"]
        mem = summaries["memory"]["consistency"]
        assert mem["consistent"] is False and mem["problems"], mem
        two = [t for t in summaries["memory"]["trials"] if t["replicas"] == 2]
        assert all(t["consistency"]["consistent"] is False for t in two)
        data = json.loads((cdir / "comparison" / "compare.json").read_text())
        assert (cdir / "comparison" / "compare.html").is_file()
        assert "memory / redis" in done.stdout and "inconsistent" in done.stdout
        assert data
        for store in plan["stores"]:
            assert wait_no_marked_processes(f"{cdir.name}-{store}", grace=1.0) == []
    finally:
        for store in ("redis", "memory"):
            clean_up_run(f"{cdir.name}-{store}")
