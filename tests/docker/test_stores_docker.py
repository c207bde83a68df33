"""STORE=postgres on the docker runtime: a kv sweep (N = 1, 2) through the `hscale`
console script, then a running stack inspected (the postgres container's hardening, its
network, its password) and torn down. Whatever happens, every container, network and
volume of the tests' compose projects is removed afterwards. Also: docker-compose.yml's
store settings are the local runtime's."""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator

import docker
import pytest
import yaml
from hscale_testkit import (
    CliRun as Run,
)
from hscale_testkit import (
    clean_up_run,
    compose_project_name,
    compose_project_resources,
    free_port_block,
    run_dirs,
    run_hscale,
    wait_no_marked_processes,
)

from hscale import __version__, settings
from hscale.runtimes.compose import COMPOSE_FILE
from hscale.runtimes.docker import DockerRuntime, engine_answers
from hscale.runtimes.local_stores import POSTGRES_SETTINGS, MemcachedStore

pytestmark = pytest.mark.e2e
needs_engine = pytest.mark.skipif(
    not engine_answers(), reason="no Docker engine answers here (docker runtime tests)"
)
POSTGRES_IMAGE = f"hscale-postgres:{__version__}"


def test_compose_store_settings_are_the_local_runtimes():
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    command = services["postgres"]["command"]
    pairs = dict(arg.split("=", 1) for arg in command[1::2])
    assert command[0::2] == ["-c"] * len(pairs)
    assert pairs == {**POSTGRES_SETTINGS, "max_connections": "${POSTGRES_MAX_CONNECTIONS:?}"}
    flags = services["memcached"]["command"]
    assert flags[:4] == ["-l", "0.0.0.0", "-p", "11211"]
    assert tuple(flags[4:]) == MemcachedStore.SIZING


# -- a sweep through the CLI --------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Iterator[Run]:
    base = tmp_path_factory.mktemp("docker-postgres")
    results = base / "results"
    args = ["bench", "--runtime", "docker", "--store", "postgres", "--scenario", "kv"]
    args += ["--sweep", "1 2", "--duration", "4", "--warmup", "2", "--trials", "1"]
    args += ["--port", str(free_port_block()), "--results", str(results)]
    try:
        done = run_hscale(args, tmpdir=base / "tmp", timeout=600)
        runs = run_dirs(results)
        assert len(runs) == 1, f"expected one run dir, got {runs}\n{done.stderr[-3000:]}"
        yield Run(runs[0], done)
    finally:  # whatever the tests asserted, leave nothing
        for path in run_dirs(results):
            compose_project_resources(compose_project_name(path.name), remove=True)
            clean_up_run(path.name)


@needs_engine
def test_sweep_completes_with_no_lost_write(run):
    assert run.done.returncode == 0, run.why()
    s = run.summary
    assert s["status"] == "complete", s.get("error")
    assert s["runtime"] == "docker" and s["scenario"] == "kv"
    one, two = s["trials"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    for t in (one, two):  # a shared store: every read finds what its user wrote
        assert t["requests"] > 0 and t["failures"] == 0, t["errors"]
    assert len(two["per_replica_requests"]) == 2
    assert all(count > 0 for count in two["per_replica_requests"].values())


@needs_engine
def test_store_cpu_is_the_postgres_container(run):
    for t in run.summary["trials"]:
        store = t["components"]["store"]
        assert store["kind"] == "store" and store["cpu_cores"] > 0, store


@needs_engine
def test_manifest_records_the_store(run):
    m = run.manifest
    assert m["config"]["store"] == "postgres"
    rt = m["runtime"]
    store = rt["store"]
    assert store["name"] == "postgres" and store["service"] == "postgres"
    assert store["image"] == POSTGRES_IMAGE
    assert re.search(r"\(PostgreSQL\) 15\.", store["version"] or ""), store["version"]
    assert rt["init_store"].startswith("python -m refapp.init_store")
    if rt["images_path"] == "registry-less (Debian base)":
        assert store["base_image"].startswith("hscale-base-postgres:bookworm-")
    # no password of the run is written anywhere in the run directory, in any of the
    # forms it takes (the kv keys are hex too, so look for the passwords' contexts)
    leak = re.compile(r"(hscale)?:[0-9a-f]{32}@|PASSWORD[\s=']*[0-9a-f]{32}", re.I)
    for f in run.path.rglob("*"):
        if f.is_file() and f.suffix != ".png":
            assert not leak.search(f.read_text(errors="replace")), f


@needs_engine
def test_nothing_left_behind(run):
    assert compose_project_resources(compose_project_name(run.run_id)) == []
    assert run.summary["leftover_processes"] == []
    assert wait_no_marked_processes(run.run_id, grace=1.0) == []


# -- a running stack, inspected --------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[DockerRuntime]:
    s = settings.load(
        {"RUNTIME": "docker", "STORE": "postgres", "PORT": str(free_port_block()), "SWEEP": "1"}
    )
    run_id = f"20260101-000000-pgstack-{secrets.token_hex(3)}"
    rt = DockerRuntime(s, run_id, tmp_path_factory.mktemp("pgstack"))
    try:
        rt.preflight()
        rt.start(1)
        yield rt
    finally:
        try:
            rt.stop()
        finally:
            compose_project_resources(rt.project, remove=True)


def _postgres(rt: DockerRuntime) -> dict:
    (container,) = rt._containers("postgres")
    container.reload()
    return container.attrs


@needs_engine
def test_only_the_chosen_store_runs(stack):
    assert stack._containers("redis") == [] and stack._containers("memcached") == []
    (app,) = stack._containers("app")
    env = dict(e.split("=", 1) for e in app.attrs["Config"]["Env"])
    assert env["APP_STORE"] == "postgres"
    assert env["APP_POSTGRES_DSN"] == (
        f"postgresql://hscale:{stack.postgres_password}@postgres:5432/hscale"
    )


@needs_engine
def test_postgres_is_hardened(stack):
    attrs = _postgres(stack)
    host = attrs["HostConfig"]
    assert attrs["Config"]["User"] == "postgres"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and host["CapAdd"] in (None, [])
    assert any(o.startswith("no-new-privileges") for o in host["SecurityOpt"] or [])
    assert host["PidsLimit"] and host["PidsLimit"] > 0 and host["Memory"] > 0
    assert host["Privileged"] is False
    assert not host["PortBindings"] and not any(attrs["NetworkSettings"]["Ports"].values())
    backend = f"{stack.project}_backend"
    assert set(attrs["NetworkSettings"]["Networks"]) == {backend}
    assert docker.from_env().networks.get(backend).attrs["Internal"] is True
    # the run's password reaches the container only through its environment
    assert f"POSTGRES_PASSWORD={stack.postgres_password}" in attrs["Config"]["Env"]
    assert stack.postgres_password not in " ".join(attrs["Config"]["Cmd"] or [])


def _psql(rt: DockerRuntime, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", f"{rt.project}_backend",
         "--label", f"com.docker.compose.project={rt.project}",
         "-e", f"PGPASSWORD={password}", "--entrypoint", "psql", POSTGRES_IMAGE,
         "-X", "-w", "-tA", "-h", "postgres", "-U", "hscale", "-d", "hscale",
         "-c", "SELECT current_setting('fsync') || ' ' || count(*) FROM pg_tables "
               "WHERE tablename IN ('counter', 'kv', 'sessions')"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@needs_engine
def test_postgres_needs_the_password_and_has_the_schema(stack):
    wrong = _psql(stack, "not-the-password")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr, wrong
    right = _psql(stack, stack.postgres_password)
    assert right.returncode == 0, right.stderr
    assert right.stdout.strip() == "off 3"  # settings applied; init-store made the tables


@needs_engine
def test_stop_leaves_nothing(stack):
    stack.stop()
    assert stack.leftovers() == []
    assert compose_project_resources(stack.project) == []
