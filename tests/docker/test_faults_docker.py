"""`hscale faults` on the docker runtime, small loads: a container killed, one paused and
the store container restarted under load, each measured and healed; nothing left."""

from __future__ import annotations

import json
from pathlib import Path

import docker
from hscale_testkit import (
    NEEDS_DOCKER,
    compose_project_name,
    free_port_block,
    run_dirs,
    run_hscale,
)

pytestmark = NEEDS_DOCKER


def test_faults_on_docker(tmp_path: Path) -> None:
    results = tmp_path / "results"
    args = ["faults", "--runtime", "docker", "--sweep", "2", "--scenario", "counter"]
    args += ["--duration", "9", "--warmup", "1", "--warmup-trial", "0", "--fault-at", "3"]
    args += ["--fault-pause", "1.5", "--port", str(free_port_block()), "--results", str(results)]
    done = run_hscale(args, tmpdir=tmp_path / "tmp", timeout=1200)
    (run,) = run_dirs(results)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((run / "faults.json").read_text())
    kill, pause, restart = doc["faults"]
    assert kill["done"]["replica"]
    # The survivor took over. Back within 10% is the report's call; a fresh-clone CI run
    # here saw it miss on host noise. One that did not take over serves none of the dead
    # replica's share (the local faults test has the same bound).
    assert kill["effect"]["rps_after"] > 0.55 * kill["effect"]["expected_rps"]
    assert kill["effect"]["lowest_rps"] < kill["effect"]["baseline_rps"]
    assert pause["effect"]["max_ms_during"] > 1000
    assert restart["lost_writes"]["lost"] > 0
    for f in doc["faults"]:  # healed: both replicas served each trial
        assert len(f["trial"]["per_replica_requests"]) == 2
    project = compose_project_name(run.name)
    client = docker.from_env()
    left = client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}
    )
    assert left == []
