"""RUNTIME=swarm end to end on a single-node swarm: the test creates the swarm when the
engine has none (and removes it after), and leaves a swarm the user already had alone."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import docker
import pytest
import yaml
from hscale_testkit import NEEDS_DOCKER, free_port_block, run_dirs, run_hscale, short_sweep

from hscale.runtimes.compose import COMPOSE_FILE
from hscale.runtimes.stackfile import stack_file

pytestmark = NEEDS_DOCKER


def _swarm_state() -> str:
    return docker.from_env().info()["Swarm"]["LocalNodeState"]


@pytest.fixture(scope="module")
def swarm():
    created = _swarm_state() != "active"
    if created:
        subprocess.run(
            ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
            check=True,
            capture_output=True,
        )
    yield
    if created:
        subprocess.run(["docker", "swarm", "leave", "--force"], check=True, capture_output=True)
        assert _swarm_state() == "inactive"


def test_stack_file_keeps_the_stack_and_says_what_swarm_drops():
    text, notes = stack_file(COMPOSE_FILE.read_text())
    doc = yaml.safe_load(text)
    assert set(doc["services"]) == {"app", "nginx", "redis"}
    for name, service in doc["services"].items():
        assert "build" not in service, name
        assert service["deploy"]["endpoint_mode"] == "dnsrr"
        assert not isinstance(service.get("depends_on", []), dict)
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    app = doc["services"]["app"]
    assert app["deploy"]["resources"]["limits"]["cpus"] == "${REPLICA_CPUS:?}"
    assert "${REDIS_PASSWORD:?}" in app["environment"]["APP_REDIS_URL"]  # not filled in
    # Swarm would publish on every interface: the forwarder publishes nginx instead.
    assert all("ports" not in service for service in doc["services"].values())
    assert doc["networks"]["frontend"]["attachable"] is True
    assert doc["networks"]["backend"]["internal"] is True
    assert any("no-new-privileges" in n for n in notes)


def test_swarm_sweep(swarm, tmp_path: Path):
    port = free_port_block(1)
    done, run, summary = short_sweep(
        tmp_path,
        "--runtime",
        "swarm",
        "--swarm",
        "local",
        "--sweep",
        "1 2",
        "--port",
        str(port),
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary["status"] == "complete" and summary["runtime"] == "swarm"
    one, two = summary["trials"]  # one trial per N
    assert len(one["per_replica_requests"]) == 1
    assert len(two["per_replica_requests"]) == 2
    assert all(count > 0 for count in two["per_replica_requests"].values())
    for name in two["per_replica_requests"]:  # CPU read for each app container
        assert two["components"][name]["cpu_cores"] > 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["runtime"]["stack"] and manifest["runtime"]["swarm_limits_dropped"]
    assert manifest["runtime"]["published_on"] == [f"127.0.0.1:{port}"]  # one address only
    stack_yml = (run / "runtime" / "stack.yml").read_text()
    assert "${REDIS_PASSWORD:?}" in stack_yml  # left for `docker stack deploy` to fill
    assert not re.search(r"\b[0-9a-f]{32}\b", stack_yml)  # the run's password is not there
    # the stack is gone: no service, container or network of it remains
    client = docker.from_env()
    stack = manifest["runtime"]["stack"]
    label = {"label": f"com.docker.stack.namespace={stack}"}
    assert client.services.list(filters=label) == []
    assert client.containers.list(all=True, filters=label) == []
    assert client.networks.list(filters=label) == []


def test_faults_on_swarm(swarm, tmp_path: Path) -> None:
    """A killed task is replaced by swarm itself; a paused one holds its requests; the
    store's container restarts and loses the counter; each measured, the stack healed."""
    results = tmp_path / "results"
    args = [
        "faults",
        "--runtime",
        "swarm",
        "--swarm",
        "local",
        "--sweep",
        "2",
        "--scenario",
        "counter",
    ]
    args += ["--duration", "9", "--warmup", "1", "--warmup-trial", "0", "--fault-at", "3"]
    args += ["--fault-pause", "1.5", "--port", str(free_port_block(1)), "--results", str(results)]
    done = run_hscale(args, tmpdir=tmp_path / "tmp", timeout=1200)
    (run,) = run_dirs(results)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((run / "faults.json").read_text())
    kill, pause, restart = doc["faults"]
    assert kill["done"]["replica"] and pause["effect"]["max_ms_during"] > 1000
    assert restart["lost_writes"]["lost"] > 0
    for f in doc["faults"]:
        assert len(f["trial"]["per_replica_requests"]) == 2
