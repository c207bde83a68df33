"""RUNTIME=docker end to end: a real sweep through the `hscale` console script (images
on the registry-less path, nginx, app containers under CPU limits, Redis), the hardening
of a running stack as `docker inspect` shows it, nginx following `--scale`, and the
one-line usage error when no engine answers. Whatever happens, every container, network
and volume of the tests' compose projects is removed afterwards."""

from __future__ import annotations

import ast
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest
import requests
from hscale_testkit import (
    NEEDS_DOCKER,
    clean_up_run,
    compose_project_name,
    compose_project_resources,
    free_port_block,
    hscale_cmd,
    hscale_env,
    run_dirs,
    run_hscale,
    wait_no_marked_processes,
)
from hscale_testkit import (
    CliRun as Run,
)

from hscale import __version__, settings
from hscale.runtimes.docker import DockerRuntime

pytestmark = NEEDS_DOCKER

APP_IMAGE = f"hscale-app:{__version__}"
HOSTNAME = re.compile(r"[0-9a-f]{12}")  # a container's default hostname: its short id


# -- a sweep through the CLI --------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Iterator[Run]:
    base = tmp_path_factory.mktemp("docker-sweep")
    results = base / "results"
    args = ["bench", "--runtime", "docker", "--sweep", "1 2", "--scenario", "json"]
    args += ["--duration", "4", "--warmup", "2", "--trials", "1", "--port", str(free_port_block())]
    args += ["--cpu-split", "1"] if len(os.sched_getaffinity(0)) >= 2 else []
    try:
        done = run_hscale([*args, "--results", str(results)], tmpdir=base / "tmp", timeout=300)
        runs = run_dirs(results)
        assert len(runs) == 1, f"expected one run dir, got {runs}\n{done.stderr[-3000:]}"
        yield Run(runs[0], done)
    finally:  # whatever the tests asserted, leave nothing
        for path in run_dirs(results):
            compose_project_resources(compose_project_name(path.name), remove=True)
            clean_up_run(path.name)


def test_sweep_completes(run):
    assert run.done.returncode == 0, run.why()
    s = run.summary
    assert s["status"] == "complete", s.get("error")
    assert s["error"] is None and s["runtime"] == "docker"
    assert [p["replicas"] for p in s["points"]] == [1, 2]
    for p in s["points"]:
        assert p["requests"] > 0 and p["failures"] == 0, p["notes"]


def test_both_replicas_served_and_load_is_balanced(run):
    one, two = run.summary["points"]
    assert len(one["per_replica_requests"]) == 1
    counts = two["per_replica_requests"]
    assert len(counts) == 2, counts
    assert all(HOSTNAME.fullmatch(name) for name in counts), counts  # container hostnames
    total = sum(counts.values())
    assert two["requests"] - two["failures"] <= total <= two["requests"]
    for name, count in counts.items():
        assert count > 0 and count / total >= 0.25, (name, counts)


def test_cpu_of_every_container(run):
    replica_cpus = run.manifest["config"]["replica_cpus"]
    for p in run.summary["trials"]:  # per container: the points sum the replicas
        comps = p["components"]
        apps = set(p["per_replica_requests"])
        assert apps | {"nginx", "store", "engine"} <= set(comps), sorted(comps)
        for name in apps | {"nginx", "store"}:
            assert comps[name]["cpu_cores"] > 0, (name, comps[name])
        for name in apps:
            c = comps[name]
            assert c["kind"] == "replica"
            assert c["budget_cpus"] == pytest.approx(replica_cpus)
            # the container's CPU limit holds
            assert c["cpu_cores"] <= replica_cpus * 1.15, (name, c)
        assert comps["nginx"]["kind"] == "proxy" and comps["store"]["kind"] == "store"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="CPU_SPLIT needs 2 CPUs")
def test_cpu_split_read_back_from_the_engine(run):
    """CPU_SPLIT=1: the app containers on the last CPU, nginx and the store on the others,
    as the engine reports them; the ballast, the probe and the harness (Locust) likewise."""
    cpus = sorted(os.sched_getaffinity(0))
    mine, rest = str(cpus[-1]), ",".join(map(str, cpus[:-1]))
    seen = run.summary["cpu_split"]["observed"]
    apps = {name for name in seen if HOSTNAME.fullmatch(name)}
    assert len(apps) == 2, seen  # both replicas, at N = 2
    assert {seen[a] for a in apps} | {seen["ballast"], seen["probe"]} == {mine}, seen
    assert {seen["nginx"], seen["store"], seen["harness"]} == {rest}, seen


def test_manifest_records_the_registry_less_path(run):
    rt = run.manifest["runtime"]
    assert rt["name"] == "docker" and rt["cpu_limits"] == "docker-cpus"
    assert rt["images_path"] == "registry-less (Debian base)"
    assert rt["base_image"].startswith("hscale-base:bookworm-")
    assert rt["project"] == compose_project_name(run.run_id)
    assert run.manifest["status"] == "complete"
    # the run's Redis password is not written anywhere in the run directory
    for f in run.path.rglob("*"):
        if f.is_file() and f.suffix != ".png":
            assert not re.search(r"\b[0-9a-f]{32}\b", f.read_text(errors="replace")), f


def test_nothing_left_behind(run):
    assert compose_project_resources(compose_project_name(run.run_id)) == []
    assert run.summary["leftover_processes"] == []
    assert wait_no_marked_processes(run.run_id, grace=1.0) == []


# -- a running stack, inspected --------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[DockerRuntime]:
    s = settings.load(
        {"RUNTIME": "docker", "PORT": str(free_port_block()), "SWEEP": "2 3", "REPLICA_CPUS": "0.3"}
    )
    run_id = f"20260101-000000-harden-{secrets.token_hex(3)}"
    rt = DockerRuntime(s, run_id, tmp_path_factory.mktemp("stack"))
    try:
        rt.preflight()
        rt.start(2)
        yield rt
    finally:
        try:
            rt.stop()
        finally:
            compose_project_resources(rt.project, remove=True)


def _inspect(rt: DockerRuntime, service: str) -> list[dict]:
    containers = rt._containers(service)
    assert containers, f"no running {service} container"
    for c in containers:
        c.reload()
    return [c.attrs for c in containers]


@pytest.mark.parametrize("service", ["app", "nginx", "redis"])
def test_containers_are_hardened(stack, service):
    for attrs in _inspect(stack, service):
        name, host = attrs["Name"], attrs["HostConfig"]
        user = attrs["Config"]["User"]
        assert user and user.split(":")[0] not in ("0", "root"), (name, user)
        assert host["ReadonlyRootfs"] is True, name
        assert host["CapDrop"] == ["ALL"], (name, host["CapDrop"])
        assert host["CapAdd"] in (None, []), (name, host["CapAdd"])
        assert any(o.startswith("no-new-privileges") for o in host["SecurityOpt"] or []), name
        assert host["PidsLimit"] and host["PidsLimit"] > 0, name
        assert host["Memory"] > 0, name
        assert host["Privileged"] is False, name


def test_app_limits_match_the_settings(stack):
    for attrs in _inspect(stack, "app"):
        host = attrs["HostConfig"]
        assert host["NanoCpus"] == round(stack.s.replica_cpus * 1e9), host["NanoCpus"]
        assert host["Memory"] == 256 * 1024 * 1024  # REPLICA_MEMORY=256m


def test_only_nginx_publishes_and_only_on_loopback(stack):
    for service in ("app", "redis"):
        for attrs in _inspect(stack, service):
            assert not attrs["HostConfig"]["PortBindings"], attrs["Name"]
            assert not any(attrs["NetworkSettings"]["Ports"].values()), attrs["Name"]
    (nginx,) = _inspect(stack, "nginx")
    bindings = nginx["HostConfig"]["PortBindings"]
    assert set(bindings) == {"8080/tcp"}, bindings
    assert bindings["8080/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(stack.s.port)}]
    resp = requests.get(f"{stack.published}/json", timeout=5)
    assert resp.status_code == 200 and resp.headers.get("X-Replica") in stack.replicas()


def test_redis_is_only_on_the_internal_network(stack):
    (redis,) = _inspect(stack, "redis")
    backend = f"{stack.project}_backend"
    assert set(redis["NetworkSettings"]["Networks"]) == {backend}
    assert docker.from_env().networks.get(backend).attrs["Internal"] is True


PROBE = """
import os, socket
def ask(*lines):
    with socket.create_connection(("redis", 6379), timeout=5) as s:
        s.sendall(b"".join(line.encode() + b"\\r\\n" for line in lines))
        reply = b""
        while reply.count(b"\\r\\n") < len(lines):
            chunk = s.recv(256)
            if not chunk:
                break
            reply += chunk
        return reply
print(repr(ask("PING")))
print(repr(ask("AUTH " + os.environ["PW"], "PING")))
"""


def test_redis_refuses_clients_without_the_password(stack):
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", f"{stack.project}_backend",
         "--label", f"com.docker.compose.project={stack.project}",
         "-e", f"PW={stack.password}", APP_IMAGE, "python3", "-c", PROBE],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    without, with_password = done.stdout.splitlines()
    assert ast.literal_eval(without).startswith(b"-NOAUTH"), without
    assert ast.literal_eval(with_password) == b"+OK\r\n+PONG\r\n", (
        with_password
    )  # the probe itself works


def _replicas_seen(endpoint: str, want: int, within: float) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + within
    with requests.Session() as session:
        while len(seen) < want and time.monotonic() < deadline:
            resp = session.get(endpoint + "/json", timeout=5)
            assert resp.status_code == 200, resp.text[:200]
            seen.add(resp.headers["X-Replica"])
    return seen


def test_nginx_follows_scaling(stack):
    assert len(_replicas_seen(stack.endpoint, 2, 10)) == 2
    stack.resize(3)
    assert len(stack._containers("app")) == 3
    seen = _replicas_seen(stack.endpoint, 3, 10)
    assert seen == set(stack.replicas()), (seen, stack.replicas())
    assert len(seen) == 3


def test_a_shrink_by_two_returns_once_nginx_sends_only_to_the_survivor(stack):
    """3 -> 1: resize returns when nginx lists the one running replica (/nginx-upstreams
    on a fresh connection); before that, a request could try two stopped replicas and
    end in a 504, which failed a sweep's endpoint check at 4 -> 2."""
    stack.resize(1)
    (address,) = stack.upstreams()
    assert requests.get(stack.endpoint + "/nginx-upstreams", timeout=5).text.split() == [address]
    replies = [requests.get(stack.endpoint + "/healthz", timeout=10) for _ in range(20)]
    failed = [(i, r.status_code, r.headers.get("X-Upstream")) for i, r in enumerate(replies)]
    assert [f for f in failed if f[1] != 200] == [], stack._containers("nginx")[0].logs()[-3000:]


def test_stop_leaves_nothing(stack):
    stack.stop()
    assert stack.leftovers() == []
    assert compose_project_resources(stack.project) == []


# -- no engine ----------------------------------------------------------------------------


def test_docker_runtime_without_an_engine_is_a_usage_error(tmp_path):
    results = tmp_path / "results"
    env = {**hscale_env(tmp_path / "tmp"), "DOCKER_HOST": "unix:///nonexistent.sock"}
    argv = ["bench", "--runtime", "docker", "--sweep", "1", "--port", str(free_port_block())]
    done = subprocess.run(
        [*hscale_cmd(), *argv, "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "RUNTIME=local" in lines[0], lines[0]
    assert run_dirs(results) == []
