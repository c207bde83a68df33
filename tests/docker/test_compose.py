"""docker-compose.yml as hscale's docker runtime uses it: what `docker-compose config`
makes of it with the environment hscale passes (and without a mandatory variable), and
the image build on the registry-less path (Debian base, local wheelhouse)."""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

import docker
import pytest
import yaml
from hscale_testkit import compose_project_resources, free_port_block

from hscale import __version__, settings
from hscale.runtimes import images
from hscale.runtimes.compose import COMPOSE_FILE, Compose
from hscale.runtimes.docker import DockerRuntime, engine_answers

pytestmark = pytest.mark.skipif(
    not engine_answers(), reason="no Docker engine answers here (docker runtime tests)"
)

APP_IMAGE = f"hscale-app:{__version__}"
NGINX_IMAGE = f"hscale-nginx:{__version__}"


@pytest.fixture
def runtime(tmp_path: Path) -> DockerRuntime:
    """A docker runtime for a made-up run (nothing started): the source of hscale's env."""
    s = settings.load({"RUNTIME": "docker", "PORT": str(free_port_block()), "SWEEP": "1 2"})
    return DockerRuntime(s, f"20260101-000000-json-{secrets.token_hex(3)}", tmp_path)


def hscale_env(rt: DockerRuntime) -> dict[str, str]:
    return {**rt.env(), **images.registry_env()}


def config(rt: DockerRuntime, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`<compose> config ...` exactly as hscale invokes compose (project, file, flags)."""
    return Compose(rt.project, env, ("loadgen",)).run("config", *args, check=False, timeout=60)


def test_config_is_valid_with_the_environment_hscale_passes(runtime):
    done = config(runtime, hscale_env(runtime), "-q")
    assert done.returncode == 0, done.stdout
    assert done.stdout.strip() == "", done.stdout


@pytest.mark.parametrize("missing", ["REDIS_PASSWORD", "APP_IMAGE", "REPLICA_CPUS"])
def test_config_fails_naming_a_missing_mandatory_variable(runtime, missing):
    env = hscale_env(runtime)
    del env[missing]
    done = config(runtime, env, "-q")
    assert done.returncode != 0, f"compose accepted the file without {missing}"
    assert missing in done.stdout, done.stdout


def test_file_has_no_version_key_and_only_nginx_publishes_a_port():
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    assert "version" not in doc
    published = {name for name, svc in doc["services"].items() if "ports" in svc}
    assert published == {"nginx"}
    (port,) = doc["services"]["nginx"]["ports"]
    assert port == "${PUBLISH_ADDRESS:-127.0.0.1}:${PORT:?}:8080", port  # loopback unless asked


def test_resolved_config_publishes_only_nginx_on_loopback(runtime):
    """What compose resolves (every service, the loadgen profile included)."""
    done = config(runtime, hscale_env(runtime))
    assert done.returncode == 0, done.stdout
    services = yaml.safe_load(done.stdout)["services"]
    assert {"app", "nginx", "redis", "locust-master", "locust-worker"} <= set(services)
    assert {name for name, svc in services.items() if svc.get("ports")} == {"nginx"}
    assert services["nginx"]["ports"] == [f"127.0.0.1:{runtime.s.port}:8080/tcp"]
    # the password reaches the app and redis, and only through the environment
    pw = runtime.password
    assert services["app"]["environment"]["APP_REDIS_URL"] == f"redis://:{pw}@redis:6379/0"
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == pw
    assert "$$REDIS_PASSWORD" in " ".join(services["redis"]["command"])
    assert services["app"]["deploy"]["resources"]["limits"]["cpus"] == pytest.approx(
        runtime.s.replica_cpus
    )
    assert yaml.safe_load(done.stdout)["networks"]["backend"]["internal"] is True
    assert services["redis"]["networks"] == {"backend": None}


# -- images on the registry-less path ----------------------------------------------------


def _image(client: docker.DockerClient, tag: str):
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {tag} does not exist after images.build", pytrace=False)


@pytest.fixture(scope="module")
def offline_builds(tmp_path_factory) -> list[tuple[dict[str, str], list[str]]]:
    """images.build(..., "1", log) twice in a row: (returned env, log lines) of each."""
    s = settings.load({"RUNTIME": "docker", "PORT": str(free_port_block()), "SWEEP": "1"})
    rt = DockerRuntime(
        s, f"20260101-000000-build-{secrets.token_hex(3)}", tmp_path_factory.mktemp("build")
    )
    builds = []
    try:
        for _ in range(2):
            lines: list[str] = []
            extra = images.build(Compose(rt.project, rt.env()), "1", lines.append)
            builds.append((extra, lines))
    finally:  # a build starts no container; remove anything labelled anyway
        compose_project_resources(rt.project, remove=True)
    return builds


def test_offline_build_returns_the_registry_less_environment(offline_builds):
    extra, _ = offline_builds[0]
    assert "--no-index" in extra["PIP_INSTALL_ARGS"].split()
    assert extra["PYTHON_IMAGE"] == extra["NGINX_IMAGE"] == images.base_tag()
    assert extra["REDIS_IMAGE"] == images.base_tag()
    assert offline_builds[1][0] == extra


def test_offline_build_tags_the_images_it_built(offline_builds):
    client = docker.from_env()
    _, lines = offline_builds[-1]
    base = _image(client, images.base_tag())
    built = [m.group(1) for line in lines if (m := re.search(r"Successfully built (\w+)", line))]
    assert len(built) == 2, lines  # app, then nginx
    expected = [(APP_IMAGE, built[0], "10001:10001"), (NGINX_IMAGE, built[1], "10002:10002")]
    for tag, short_id, user in expected:
        image = _image(client, tag)
        assert image.id.split(":")[1].startswith(short_id), (tag, image.id, short_id)
        assert image.attrs["Config"]["User"] == user, tag
        # FROM the local Debian base, not an official image from a registry
        layers = image.attrs["RootFS"]["Layers"]
        assert layers[: len(base.attrs["RootFS"]["Layers"])] == base.attrs["RootFS"]["Layers"]


def test_second_build_reuses_the_base(offline_builds):
    client = docker.from_env()
    _, second = offline_builds[1]
    assert any("reusing" in line and images.base_tag() in line for line in second), second
    assert not any("bootstrapping" in line for line in second), second
    # the wheels too, while the pins are unchanged (no resolve against PyPI)
    assert sum("reusing the pinned wheels" in line for line in second) == 2, second
    assert client.images.get(images.base_tag()).tags  # still there, still tagged
