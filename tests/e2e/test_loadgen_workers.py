"""LOADGEN_WORKERS=k: a Locust master and k workers whose tallies are merged exactly.
Locally the workers are processes; on the docker runtime they are containers (compose
profile `loadgen`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hscale_testkit import Ports, free_port_block, short_sweep

from hscale.analysis.latency import decode
from hscale.runtimes.docker import engine_answers

pytestmark = pytest.mark.e2e


def _sweep(tmp_path: Path, *args: str) -> dict:
    done, run, summary = short_sweep(tmp_path, "--sweep", "2", "--loadgen-workers", "2", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary["status"] == "complete"
    (point,) = summary["trials"]
    tally = json.loads((run / point["raw"] / "tally.json").read_text())
    locust = json.loads((run / point["raw"] / "locust.json").read_text())
    locust_requests = sum(e["num_requests"] for e in locust)
    return {"point": point, "tally": tally, "locust_requests": locust_requests}


def _check_merged(got: dict) -> None:
    point, tally = got["point"], got["tally"]
    assert point["loadgen_workers"] == 2 and tally["workers"] == 2
    assert point["requests"] > 0 and point["failures"] == 0
    # merged exactly: every response is in the summed replica counts and in the added histogram
    assert sum(point["per_replica_requests"].values()) == point["requests"]
    assert decode(tally["histogram"]).get_total_count() == point["requests"]
    assert point["latency_ms"]["max"] >= point["latency_ms"]["p99"]
    # Locust's own stats may hold up to one worker report of warm-up, never less than ours
    assert point["requests"] <= got["locust_requests"] <= point["requests"] * 1.6
    assert point["components"]["loadgen"]["cpu_cores"] > 0
    assert point["components"]["loadgen"]["budget_cpus"] == 2.0


def test_local_processes(tmp_path: Path):
    _check_merged(_sweep(tmp_path, *Ports(2).args()))


@pytest.mark.skipif(not engine_answers(), reason="no Docker engine answers here")
def test_docker_containers(tmp_path: Path):
    _check_merged(_sweep(tmp_path, "--runtime", "docker", "--port", str(free_port_block(1))))
