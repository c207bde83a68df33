"""`hscale faults` on the local runtime, with small loads: a replica killed, a replica
paused and the store restarted under load, each measured; one report; nothing left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hscale_testkit import Ports, clean_up_run, run_dirs, run_hscale, wait_no_marked_processes

pytestmark = pytest.mark.e2e


def test_each_fault_is_struck_measured_and_healed(tmp_path: Path) -> None:
    results = tmp_path / "results"
    # 4 s before the fault: a baseline of whole seconds (single seconds move ~10%).
    args = ["faults", "--sweep", "2", "--scenario", "counter", "--duration", "10"]
    args += ["--warmup", "1", "--warmup-trial", "0", "--fault-at", "4", "--fault-pause", "1.5"]
    args += ["--results", str(results), *Ports(2).args()]
    done = run_hscale(args, tmpdir=tmp_path / "tmp", timeout=300)
    (run,) = run_dirs(results)
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        doc = json.loads((run / "faults.json").read_text())
        assert doc["status"] == "complete" and doc["store"] == "redis"
        got = {f["fault"]: f for f in doc["faults"]}
        assert list(got) == ["kill-replica", "pause-replica", "restart-store"]
        kill, pause, restart = got.values()
        # The last replica went; the survivor took over (nginx retries idempotent GETs,
        # and the counter scenario's POSTs that were in flight fail).
        assert kill["done"] == {"replica": "replica-2"}
        # (Within 10% is the report's call. The test's bound is loose: on this noisy host a
        # fresh-clone CI run saw 0.68 of the expected rate from a survivor that did take
        # over; one that did not would serve none of the dead replica's share.)
        assert kill["effect"]["rps_after"] > 0.55 * kill["effect"]["expected_rps"]
        assert kill["effect"]["lowest_rps"] < kill["effect"]["baseline_rps"]
        # A paused replica holds its requests: the worst second is slow, none is lost.
        # Back within 10% is the report's call; on this host a run saw the seconds after a
        # pause stay 10% to 20% low for host noise. One that never resumed would hold half
        # the users, and its share of the throughput with them.
        assert pause["effect"]["max_ms_during"] > 1000
        assert pause["effect"]["rps_after"] > 0.7 * pause["effect"]["baseline_rps"]
        # Redis without persistence: the restart loses the counter, and the report says so.
        assert restart["lost_writes"]["lost"] > 0 and "appendonly" in restart["durability"]
        assert "lost" in restart["verdict"]
        # Healed between faults: each trial began with both replicas serving.
        for f in doc["faults"]:
            assert set(f["trial"]["per_replica_requests"]) == {"replica-1", "replica-2"}
        page = (run / "faults.html").read_text()
        assert page.count("data:image/png;base64,") == 3 and 'src="http' not in page
        assert (run / "figures" / "fault-kill-replica.png").stat().st_size > 1000
        assert json.loads((run / "summary.json").read_text())["status"] == "complete"
        assert wait_no_marked_processes(run.name, grace=1.0) == []
    finally:
        clean_up_run(run.name)


def test_restart_store_needs_a_store(tmp_path: Path) -> None:
    args = ["faults", "--store", "memory", "--fault", "restart-store"]
    done = run_hscale([*args, "--results", str(tmp_path), *Ports(4).args()], timeout=60)
    assert done.returncode == 2 and "restart-store needs a store server" in done.stderr
    assert run_dirs(tmp_path) == []
