"""Your app on the docker runtime: a tiny Flask project (APP=path) built into a hardened
image and swept (N = 1, 2) with its own Locust file, the per-replica split proved by
nginx's X-Upstream, APP_INIT run once with the store's variables; the same image given as
IMAGE= listening on another port (APP_CONTAINER_PORT) with Locust in containers; a broken
app and a failing APP_INIT as one-line errors that leave nothing behind. Whatever
happens, every container, network and volume of the tests' projects is removed."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml
from hscale_testkit import (
    NEEDS_DOCKER,
    assert_merged_exactly,
    clean_up_run,
    compose_project_name,
    compose_project_resources,
    free_port_block,
    run_dirs,
    run_hscale,
    wait_no_marked_processes,
)
from hscale_testkit import (
    CliRun as Run,
)

from hscale import paths, settings
from hscale.errors import UsageError
from hscale.procs import StartupError
from hscale.runtimes import compose, images
from hscale.runtimes.docker import DockerRuntime, _tail
from hscale.runtimes.stackfile import stack_file
from hscale.target import resolve

pytestmark = NEEDS_DOCKER

# A counter in Redis that answers 503 until APP_INIT has run: a sweep that completes
# proves the init ran once, before the replicas, with REDIS_URL.
APP_PY = """\
import os

import redis
from flask import Flask

app = Flask(__name__)
store = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=2)


@app.get("/")
def index():
    if store.get("initialised") != b"yes":
        return {"error": "APP_INIT did not run"}, 503
    return {"hits": store.incr("hits")}
"""
LOCUSTFILE = """\
from locust import FastHttpUser, task


class Visitor(FastHttpUser):
    @task
    def index(self):
        self.client.get("/")
"""
# redis-py needs async-timeout on the registry-less base's Python (3.11.2): left out on
# purpose, hscale must find it (images._complete_for).
REQUIREMENTS = "flask==3.1.3\nredis==8.1.0\n"
APP_INIT = (
    'python -c "import os, redis; '
    "redis.Redis.from_url(os.environ['REDIS_URL']).set('initialised', 'yes')\""
)
SHORT = ["--duration", "4", "--warmup", "1", "--trials", "1", "--sweep", "1 2"]


def write_project(root: Path, app_py: str = APP_PY) -> Path:
    root.mkdir(parents=True)
    (root / "counter.py").write_text(app_py)
    (root / "requirements.txt").write_text(REQUIREMENTS)
    (root / "locustfile.py").write_text(LOCUSTFILE)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_project(tmp_path_factory.mktemp("your-app") / "counter")


@contextlib.contextmanager
def sweep(base: Path, *args: str, timeout: float = 600) -> Iterator[Run]:
    """A short docker sweep through the CLI into base/results; cleans up whatever it left."""
    results = base / "results"
    argv = ["bench", "--runtime", "docker", *SHORT, "--port", str(free_port_block())]
    try:
        done = run_hscale([*argv, *args, "--results", str(results)], tmpdir=base / "tmp",
                          timeout=timeout)  # fmt: skip
        runs = run_dirs(results)
        assert len(runs) == 1, f"expected one run dir, got {runs}\n{done.stderr[-3000:]}"
        yield Run(runs[0], done)
    finally:
        for path in run_dirs(results):
            compose_project_resources(compose_project_name(path.name), remove=True)
            clean_up_run(path.name)


def assert_split_and_clean(run: Run) -> None:
    """N=2 served by both app containers (their hostnames, from X-Upstream), and nothing
    left behind."""
    one, two = run.summary["points"]
    assert len(one["per_replica_requests"]) == 1, one["per_replica_requests"]
    counts = two["per_replica_requests"]
    assert len(counts) == 2, counts
    total = sum(counts.values())
    for name, count in counts.items():
        assert len(name) == 12, counts  # a container hostname, not an address
        assert count / total >= 0.25, (name, counts)
    assert compose_project_resources(compose_project_name(run.run_id)) == []
    assert wait_no_marked_processes(run.run_id, grace=1.0) == []


# -- APP=path ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project_run(tmp_path_factory, project) -> Iterator[Run]:
    base = tmp_path_factory.mktemp("docker-your-app")
    with sweep(base, "--app", str(project), "--store", "redis", "--app-init", APP_INIT) as run:
        yield run


def test_project_sweep_completes_and_splits_by_upstream(project_run):
    run = project_run
    assert run.done.returncode == 0, run.why()
    assert run.summary["status"] == "complete", run.summary.get("error")
    assert [p["replicas"] for p in run.summary["points"]] == [1, 2]
    for p in run.summary["points"]:  # 503 until APP_INIT ran: none means it ran first
        assert p["requests"] > 0 and p["failures"] == 0, p["notes"]
    assert_split_and_clean(run)


def test_manifest_records_the_target_and_its_image(project_run, project):
    rt = project_run.manifest["runtime"]
    assert rt["target"]["kind"] == "project" and rt["target"]["project"] == str(project)
    assert rt["target"]["wsgi"] == "counter:app" and rt["target"]["init"] == APP_INIT
    assert rt["app_image"].startswith("hscale-app-counter:"), rt["app_image"]
    assert rt["app_image_id"].startswith("sha256:")
    assert rt["init_store"] is None  # the reference app's command never runs for yours
    image = docker.from_env().images.get(rt["app_image"])  # kept for the next run
    assert image.attrs["Config"]["User"] == "10001:10001"
    env = dict(e.split("=", 1) for e in image.attrs["Config"]["Env"])
    assert env["GUNICORN_APP"] == "counter:app" and env["GUNICORN_CHDIR"] == "/srv/app"


def test_compose_file_for_your_app_keeps_the_hardening(project_run):
    doc = yaml.safe_load((project_run.path / "runtime" / "compose.yml").read_text())
    app = doc["services"]["app"]
    assert app["read_only"] is True and app["cap_drop"] == ["ALL"]
    assert app["healthcheck"] == {"disable": True} and "build" not in app
    assert app["environment"]["REDIS_URL"] == "redis://:${REDIS_PASSWORD:?}@redis:6379/0"
    assert doc["services"]["nginx"]["depends_on"] == {"app": {"condition": "service_started"}}


def test_unchanged_project_reuses_its_image_and_a_change_rebuilds(project, tmp_path):
    s = settings.load({"RUNTIME": "docker", "APP": str(project), "STORE": "redis"})
    env = {**images.registry_env(), **images.offline_env()}
    tag = images.project_tag(resolve(s), env)
    (project / "__pycache__").mkdir(exist_ok=True)
    (project / "__pycache__" / "counter.cpython-311.pyc").write_bytes(b"junk")
    assert images.project_tag(resolve(s), env) == tag  # caches do not count
    changed = write_project(tmp_path / "counter", APP_PY + "\n# changed\n")
    other = settings.load({"RUNTIME": "docker", "APP": str(changed), "STORE": "redis"})
    assert images.project_tag(resolve(other), env) != tag


# -- IMAGE=name:tag -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_image(project_run) -> Iterator[str]:
    """The project's image, told to listen on 8001: an image with its own command."""
    base = project_run.manifest["runtime"]["app_image"]
    tag = f"hscale-test-own-image:{secrets.token_hex(3)}"
    dockerfile = (
        f'FROM {base}\nCMD ["gunicorn", "-c", "/srv/hscale/gunicorn.conf.py", '
        '"--bind", "0.0.0.0:8001"]\n'
    )
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True,
                   check=True, capture_output=True)  # fmt: skip
    yield tag
    subprocess.run(["docker", "image", "rm", tag], capture_output=True)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, project, own_image) -> Iterator[Run]:
    base = tmp_path_factory.mktemp("docker-your-image")
    with sweep(
        base, "--image", own_image, "--app-container-port", "8001",
        "--locustfile", str(project / "locustfile.py"), "--store", "redis",
        "--app-init", APP_INIT, "--loadgen-workers", "2",
    ) as run:  # fmt: skip
        yield run


def test_image_sweep_on_its_own_port_with_locust_in_containers(image_run, own_image):
    run = image_run
    assert run.done.returncode == 0, run.why()
    assert run.summary["status"] == "complete", run.summary.get("error")
    for p in run.summary["points"]:
        assert p["requests"] > 0 and p["failures"] == 0, p["notes"]
    assert_split_and_clean(run)
    rt = run.manifest["runtime"]
    assert rt["target"]["kind"] == "image" and rt["target"]["port"] == 8001
    assert rt["app_image"] == own_image
    # Locust ran in containers, from the user's file beside hscale's hooks
    override = yaml.safe_load((run.path / "runtime" / "compose.locust.yml").read_text())
    worker = override["services"]["locust-worker"]
    assert worker["command"][1] == "/hscale/locust/locustfile.py,/loadtests/hscale_listener.py"
    assert worker["environment"] == {"HSCALE_OWN_LOCUSTFILE": "1"}
    assert worker["volumes"][0]["read_only"] is True
    # the two worker containers' tallies merged exactly
    two = next(t for t in run.summary["trials"] if t["replicas"] == 2)
    assert_merged_exactly(run.path, two, workers=2)


def test_missing_image_is_a_one_line_usage_error(tmp_path, project):
    results = tmp_path / "results"
    done = run_hscale(
        ["bench", "--runtime", "docker", "--image", "hscale-no-such-image:0",
         "--locustfile", str(project / "locustfile.py"), "--port", str(free_port_block()),
         "--results", str(results)],
        tmpdir=tmp_path / "tmp", timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "IMAGE=hscale-no-such-image:0" in lines[0], lines
    assert run_dirs(results) == []


# -- failures -----------------------------------------------------------------------------


def test_broken_app_is_a_one_line_error_and_leaves_nothing(tmp_path):
    broken = write_project(tmp_path / "broken", "import nosuchmodule\n" + APP_PY)
    with sweep(tmp_path, "--app", str(broken), "--store", "none") as run:
        assert run.done.returncode in (1, 2), run.why()
        error = run.summary["error"]
        assert run.summary["status"] == "failed" and "\n" not in error, error
        assert "ModuleNotFoundError: No module named 'nosuchmodule'" in error, error
        assert compose_project_resources(compose_project_name(run.run_id)) == []


def test_failing_app_init_stops_the_start_with_its_output(tmp_path, project_run, project):
    s = settings.load(
        {"RUNTIME": "docker", "APP": str(project), "STORE": "none", "SWEEP": "1",
         "PORT": str(free_port_block()), "APP_INIT": "echo init-was-here; exit 7"}
    )  # fmt: skip
    rt = DockerRuntime(s, f"20260101-000000-init-{secrets.token_hex(3)}", tmp_path / "rt")
    try:
        rt.preflight()
        with pytest.raises(StartupError, match="APP_INIT failed with code 7.*init-was-here"):
            rt.start(1)
        assert rt._containers("app") == []  # no replica started
    finally:
        rt.stop()
        compose_project_resources(rt.project, remove=True)
    assert rt.leftovers() == []


# -- pieces, no stack ---------------------------------------------------------------------


def test_compose_accepts_the_file_for_your_app(tmp_path, project):
    s = settings.load({"RUNTIME": "docker", "APP": str(project), "STORE": "redis"})
    rt = DockerRuntime(s, f"20260101-000000-cfg-{secrets.token_hex(3)}", tmp_path)
    c = rt.compose()
    env = {**c.env, **images.registry_env()}
    done = compose.Compose(c.project, env, c.profiles, c.overrides, c.base).run(
        "config", check=False, timeout=60
    )
    assert done.returncode == 0, done.stdout
    services = yaml.safe_load(done.stdout)["services"]
    assert services["app"]["environment"]["REDIS_URL"].startswith(f"redis://:{rt.password}@")
    assert services["nginx"]["environment"]["UPSTREAM_PORT"] == "8000"
    assert services["nginx"]["build"]["context"] == str(paths.NGINX_DIR)


def test_stack_file_for_your_app_has_no_reference_healthcheck():
    text, _ = stack_file(yaml.safe_dump(compose.for_your_app("postgres")), "postgres")
    app = yaml.safe_load(text)["services"]["app"]
    assert app["healthcheck"] == {"disable": True}
    assert app["environment"]["DATABASE_URL"] == app["environment"]["APP_POSTGRES_DSN"]
    assert "REDIS_URL" not in app["environment"]  # only STORE's


def test_a_log_tail_leads_with_the_exception():
    log = (
        'Traceback (most recent call last):\n  File "x.py", line 1\n'
        "ModuleNotFoundError: No module named 'x'\n"
        "[2026-01-01 00:00:00 +0000] [7] [INFO] Worker exiting (pid: 7)\n"
        "[2026-01-01 00:00:00 +0000] [1] [ERROR] Shutting down: Master\n"
        "[2026-01-01 00:00:00 +0000] [1] [ERROR] Reason: Worker failed to boot.\n"
    )
    assert _tail(log) == (
        "ModuleNotFoundError: No module named 'x' | Worker exiting (pid: 7) | "
        "Shutting down: Master | Reason: Worker failed to boot."
    )


def test_missing_image_check_names_the_image():
    with pytest.raises(UsageError, match="IMAGE=hscale-no-such-image:1 is not on this"):
        images.ensure_image("hscale-no-such-image:1")
