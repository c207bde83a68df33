"""`hscale cluster up|down` (make cluster, make cluster-down): one 3-node cluster for the
module, its swarm and registry checked through the engines' APIs, a swarm sweep across its
nodes (replicas on two, Locust's worker on the third), then taken down, and an
`up` killed half-way cleaned up by `down`. Where a cluster is already up, the tests that
need the module's cluster are skipped: they would take that cluster down."""

from __future__ import annotations

import ipaddress
import json
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml
from hscale_testkit import (
    NEEDS_DOCKER,
    ROOT,
    free_port_block,
    hscale_cmd,
    hscale_env,
    run_dirs,
    run_hscale,
    short_sweep,
)

from hscale import cluster as hc

pytestmark = [
    *NEEDS_DOCKER,
    pytest.mark.docker,
    pytest.mark.swarm,
    pytest.mark.cluster,
    pytest.mark.slow,
]
UP_TIMEOUT_S = 900  # a fresh machine bootstraps the Debian base and builds two images


def leftovers() -> list[str]:
    client = docker.from_env()
    where = {"label": hc.LABEL}
    return (
        [
            f"container {c.name}"
            for c in client.containers.list(all=True, filters=where, ignore_removed=True)
        ]
        + [f"network {n.name}" for n in client.networks.list(filters=where)]
        + [f"volume {v.name}" for v in client.volumes.list(filters=where)]
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HSCALE_CACHE of the module's hscale commands: the user's cluster.json is not touched."""
    return tmp_path_factory.mktemp("cache")


def hscale(cache: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_hscale(["cluster", *args], env={"HSCALE_CACHE": str(cache)}, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(cache: Path) -> Iterator[hc.Cluster]:
    if leftovers():
        pytest.skip("a cluster is up on this engine (make cluster-down): not replacing it")
    try:
        done = hscale(cache, "up", "--nodes", "3", timeout=UP_TIMEOUT_S)
        assert done.returncode == 0, done.stderr[-3000:]
        yield hc.load(cache / "cluster.json")
    finally:
        hscale(cache, "down")


@pytest.mark.parametrize("nodes", ["1", "7", "2.5"])
def test_bad_nodes_is_a_usage_error_before_anything_starts(cache: Path, nodes: str):
    before = leftovers()
    done = hscale(cache, "up", "--nodes", nodes, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"hscale: error: NODES must be a whole number from 2 to 6, got {nodes!r}"
    )
    assert leftovers() == before


def test_make_targets_pass_nodes_and_offline_but_bench_takes_no_nodes_knob():
    def dry(*args: str) -> str:
        done = subprocess.run(
            ["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=30,
            env=hscale_env(),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "hscale cluster up --nodes '3' --offline '1'" in dry("cluster", "NODES=3", "OFFLINE=1")
    assert "hscale cluster down" in dry("cluster-down")
    assert "NODES" not in dry("bench", "NODES=3")


def test_up_gives_a_swarm_of_ready_labelled_nodes_each_at_its_own_address(
    cluster: hc.Cluster, cache: Path
):
    names = [n.name for n in cluster.nodes]
    addresses = [n.address for n in cluster.nodes]
    assert names == ["node-1", "node-2", "node-3"]
    assert len(set(addresses)) == 3
    assert all(ipaddress.ip_address(a) in hc.subnet() for a in addresses)
    manager = docker.DockerClient(base_url=cluster.manager.engine, timeout=10)
    swarm_nodes = {n.attrs["Description"]["Hostname"]: n.attrs for n in manager.nodes.list()}
    assert sorted(swarm_nodes) == names
    for node in cluster.nodes:
        attrs = swarm_nodes[node.name]
        assert attrs["Status"]["State"] == "ready"
        assert attrs["Status"]["Addr"] == node.address
        assert attrs["Spec"]["Labels"]["hscale.node"] == node.name
        assert attrs["Spec"]["Role"] == ("manager" if node.name == "node-1" else "worker")
        info = docker.DockerClient(base_url=node.engine, timeout=10).info()
        assert info["Driver"] == cluster.storage_driver == "overlay2"  # as on this machine
        assert info["RegistryConfig"]["IndexConfigs"][cluster.registry]["Secure"] is False
        # The engine API listens on the node's private address only, never on 0.0.0.0.
        box = docker.from_env().containers.get(f"hscale-{node.name}")
        _, out = box.exec_run(["ss", "-Hltn", "sport", "=", ":2375"])
        assert [line.split()[3] for line in out.decode().splitlines()] == [f"{node.address}:2375"]
    state = (cache / "cluster.json").read_text()
    assert cluster.manager.engine in state and cluster.registry in state


def test_up_again_says_so_and_another_size_is_refused(cluster: hc.Cluster, cache: Path):
    done = hscale(cache, "up", "--nodes", "3")
    assert done.returncode == 0, done.stderr
    assert "already up" in done.stdout and cluster.manager.engine in done.stdout
    done = hscale(cache, "up", "--nodes", "2")
    assert done.returncode == 2
    assert "a cluster of 3 nodes is up: make cluster-down first" in done.stderr


def test_a_pushed_image_runs_on_the_worker(cluster: hc.Cluster):
    """A tiny image (tini's static binary, from the node image) made on this host is pushed
    with push_images and run on node-2 by the reference it returns."""
    client = docker.from_env()
    node_image = client.containers.get("hscale-node-1").image
    box = client.containers.create(node_image, entrypoint=["true"])
    try:
        chunks, _ = box.get_archive("/usr/bin/tini-static")
        archive = b"".join(chunks)
    finally:
        box.remove()
    image = f"hscale-cluster-test:{secrets.token_hex(4)}"
    repo, tag = image.split(":")
    client.api.import_image_from_data(archive, repository=repo, tag=tag)
    try:
        refs = hc.push_images([image], cluster=cluster, log=lambda _line: None)
    finally:
        client.images.remove(image)
    assert refs == {image: f"{cluster.registry}/{image}"}
    assert not [t for i in client.images.list() for t in i.tags if "hscale-cluster-test" in t]
    worker = docker.DockerClient(base_url=cluster.nodes[1].engine, timeout=60)
    out = worker.containers.run(refs[image], ["/tini-static", "--version"], remove=True)
    assert out.decode().startswith("tini version")


# Reaches the store from the one-off container with the replicas' variables, or fails.
PING_INIT = "python -c \"import os, redis; redis.Redis.from_url(os.environ['REDIS_URL']).ping()\""


def test_a_swarm_sweep_spans_the_nodes_with_locust_on_its_own(cluster: hc.Cluster, tmp_path):
    """RUNTIME=swarm on the cluster with an example app, its APP_INIT and its own Locust
    file: images (the app's, and Locust's with that file) pushed to its registry and
    pulled by the nodes, APP_INIT run beside the stack, the replicas spread over node-1
    and node-2 and the split proved by X-Upstream mapped to the tasks' containers,
    Locust's worker on node-3 running the file, each component's CPU read on its node,
    and nothing of the stack left."""
    app = ROOT / "examples" / "stateless-redis"
    done, run, summary = short_sweep(
        tmp_path, "--runtime", "swarm", "--swarm", "cluster", "--sweep", "2",
        "--app", str(app), "--store", "redis", "--port", str(free_port_block(1)),
        "--app-init", PING_INIT, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary["status"] == "complete", summary.get("error")
    (two,) = summary["trials"]
    replicas = sorted(two["per_replica_requests"])
    assert len(replicas) == 2 and all(two["per_replica_requests"][r] > 0 for r in replicas)
    assert all(len(name) == 12 for name in replicas)  # the tasks' container hostnames
    assert sorted(two["nodes"][r] for r in replicas) == ["node-1", "node-2"]  # spread
    assert two["nodes"]["loadgen"] == "node-3" and two["nodes"]["nginx"] == "node-1"
    assert two["loadgen_workers"] == 1
    for name in [*replicas, "nginx", "store", "loadgen"]:  # read on the node that runs it
        assert two["components"][name]["cpu_cores"] > 0, name
    assert set(two["per_node_cpu"]) == {"node-1", "node-2", "node-3"}
    assert all(cores > 0 for cores in two["per_node_cpu"].values())
    manifest = json.loads((run / "manifest.json").read_text())
    runtime = manifest["runtime"]
    assert runtime["published_on"] == [f"{cluster.manager.address}:{manifest['config']['port']}"]
    assert runtime["cluster"]["registry"] == cluster.registry
    pushed = runtime["cluster"]["images"]
    assert pushed["APP_IMAGE"].startswith(f"{cluster.registry}/hscale-app-stateless-redis:")
    assert pushed["OWN_LOCUST_IMAGE"].startswith(f"{cluster.registry}/hscale-locust-own:")
    assert summary["target"]["locustfile"] == str(app / "locustfile.py")
    assert runtime["target"]["kind"] == "project"
    assert (run / "runtime" / "logs" / "app-init.log").is_file()  # it ran, and succeeded
    stack_yml = yaml.safe_load((run / "runtime" / "stack.yml").read_text())
    assert stack_yml["services"]["app"]["healthcheck"] == {"disable": True}
    assert two["failures"] == 0 and two["requests"] > 50  # the file's routes, run on node-3
    assert runtime["placement"]["loadgen"] == "node.labels.hscale.node == node-3"
    label = {"label": f"com.docker.stack.namespace={runtime['stack']}"}
    for node in cluster.nodes:
        engine = docker.DockerClient(base_url=node.engine, timeout=30)
        assert engine.containers.list(all=True, filters=label) == [], node.name
        assert engine.networks.list(filters=label) == [], node.name
    manager = docker.DockerClient(base_url=cluster.manager.engine, timeout=30)
    assert manager.services.list() == []


def test_a_node_stopped_under_load(cluster: hc.Cluster, tmp_path):
    """FAULT=stop-node at N = 3: it strikes node-2 (a replica's node without nginx or the
    store), is measured, and is healed: the node started again, back in the swarm and
    active, the replicas spread again. (drain-node takes the same path but for the
    node's availability, which the heal sets here too.)"""
    results = tmp_path / "results"
    args = ["faults", "--runtime", "swarm", "--swarm", "cluster", "--fault", "stop-node"]
    args += ["--fault-n", "3", "--scenario", "json", "--duration", "8", "--warmup", "1"]
    args += ["--warmup-trial", "0", "--fault-at", "2.5", "--port", str(free_port_block(1))]
    done = run_hscale([*args, "--results", str(results)], tmpdir=tmp_path / "tmp", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = run_dirs(results)
    (stop,) = json.loads((run / "faults.json").read_text())["faults"]
    for found in (stop,):
        assert found["done"]["node"] == "node-2" and found["done"]["replicas_there"]
        assert found["heal_error"] is None and found["trial"]["requests"] > 0
        assert "node-2, running" in found["verdict"]
    manager = docker.DockerClient(base_url=cluster.manager.engine, timeout=30)
    states = {n.attrs["Description"]["Hostname"]: n.attrs for n in manager.nodes.list()}
    assert all(a["Status"]["State"] == "ready" for a in states.values())
    assert all(a["Spec"]["Availability"] == "active" for a in states.values())
    assert manager.services.list() == []


def test_down_leaves_no_container_network_or_volume(cluster: hc.Cluster, cache: Path):
    done = hscale(cache, "down")
    assert done.returncode == 0, done.stderr
    assert "removed container hscale-node-3" in done.stderr
    assert leftovers() == []
    assert not (cache / "cluster.json").exists()
    done = hscale(cache, "down")  # nothing left: still fine
    assert done.returncode == 0 and "0 thing(s) removed" in done.stdout


def test_down_after_a_killed_up_leaves_nothing(cluster: hc.Cluster, cache: Path):
    """`up` SIGKILLed once its first node container exists (the images are built by
    now): `down` still finds and removes everything."""
    assert leftovers() == []
    env = {**hscale_env(), "HSCALE_CACHE": str(cache)}
    up = subprocess.Popen(
        [*hscale_cmd(), "cluster", "up", "--nodes", "2"], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any(x.startswith("container hscale-node") for x in leftovers()):
            assert up.poll() is None and time.monotonic() < deadline, "up did not start a node"
            time.sleep(0.1)
    finally:
        up.send_signal(signal.SIGKILL)
        up.wait()
    assert leftovers()
    done = hscale(cache, "down")
    assert done.returncode == 0, done.stderr
    assert leftovers() == []
