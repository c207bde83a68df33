"""Images for the docker and swarm runtimes, with or without a registry.

With a registry, `compose build` pulls the pinned official bases named in the
Dockerfiles. Without one (this is detected from the failed pull, or forced with OFFLINE=1)
hscale bootstraps a Debian root filesystem from Debian's packages (debootstrap), imports
it as one base image holding python3, nginx and redis-server, downloads the app's
pinned wheels into app/wheelhouse/, and builds the same Dockerfiles on top of that base.
STORE=memcached or postgres gets a second, smaller base of its own with that Debian
package (postgresql-15 brings LLVM and ICU: no reason to put them under every image).
Each base is tagged by the hash of what went into it and reused on later runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from hscale import paths
from hscale.errors import UsageError
from hscale.runtimes.compose import Compose, ComposeError

SUITE = "bookworm"
MIRROR = os.environ.get("HSCALE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("python3", "python3-venv", "nginx-light", "redis-server", "ca-certificates", "bash")
# The stores with a base of their own, and the compose variable that names their image.
STORE_PACKAGES = {"memcached": ("bash", "memcached"), "postgres": ("bash", "postgresql-15")}
STORE_IMAGE_VARS = {"memcached": "MEMCACHED_IMAGE", "postgres": "POSTGRES_IMAGE"}
# Each image's build context holds its own wheelhouse, filled from its requirements.txt.
WHEELHOUSES = (paths.APP_DIR, paths.LOADTESTS_DIR)
# What a failed pull of a base image looks like, from docker and both compose versions.
PULL_FAILED = re.compile(
    r"pull access denied|no such host|dial tcp|failed to resolve|manifest unknown|"
    r"not found: manifest|connection refused|TLS handshake|i/o timeout|Get \"https://",
    re.I,
)


def dockerfile_default(dockerfile: Path, arg: str) -> str:
    """The pinned default of `ARG <arg>=...` in a Dockerfile: the one place it is written."""
    m = re.search(rf"^ARG {arg}=(\S+)", dockerfile.read_text(), re.M)
    if not m:
        raise RuntimeError(f"{dockerfile} has no default for ARG {arg}")
    return m.group(1)


def compose_default(variable: str) -> str | None:
    """The default of `${VARIABLE:-...}` in docker-compose.yml (the redis and memcached
    images are pinned there, not in a Dockerfile)."""
    text = (paths.ROOT / "docker-compose.yml").read_text()
    m = re.search(rf"\$\{{{variable}:-([^}}]+)\}}", text)
    return m.group(1) if m else None


def registry_env() -> dict[str, str]:
    """Base images for the registry path (compose v1 would pass an unset build arg as '')."""
    return {
        "PYTHON_IMAGE": dockerfile_default(paths.APP_DIR / "Dockerfile", "PYTHON_IMAGE"),
        "NGINX_IMAGE": dockerfile_default(paths.NGINX_DIR / "Dockerfile", "NGINX_IMAGE"),
        "POSTGRES_IMAGE": dockerfile_default(
            paths.ROOT / "stores" / "postgres" / "Dockerfile", "POSTGRES_IMAGE"
        ),
        "PIP_INSTALL_ARGS": "",
    }


def base_tag(store: str | None = None) -> str:
    """The app's base, or (store given) that store's own base."""
    packages = STORE_PACKAGES[store] if store else PACKAGES
    digest = hashlib.sha256(" ".join((SUITE, MIRROR, *packages)).encode()).hexdigest()[:12]
    return f"hscale-base{f'-{store}' if store else ''}:{SUITE}-{digest}"


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def offline_env(store: str = "redis") -> dict[str, str]:
    """Variables that point docker-compose.yml's builds and stores at the local bases."""
    base = base_tag()
    env = {
        "PYTHON_IMAGE": base,
        "NGINX_IMAGE": base,
        "REDIS_IMAGE": base,
        "PIP_INSTALL_ARGS": "--no-index --find-links=/tmp/wheelhouse",
    }
    if store in STORE_PACKAGES:
        env[STORE_IMAGE_VARS[store]] = base_tag(store)
    return env


def ensure_base(log: Callable[[str], None], store: str | None = None) -> str:
    tag = base_tag(store)
    packages = STORE_PACKAGES[store] if store else PACKAGES
    if image_exists(tag):
        log(f"offline: reusing base image {tag}")
        return tag
    if os.geteuid() != 0:
        raise UsageError(
            "building images without a registry needs root (debootstrap); "
            "run as root, or use a registry, or RUNTIME=local"
        )
    if not shutil.which("debootstrap"):
        log("offline: installing debootstrap from Debian's packages")
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "debootstrap"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
        )
    with tempfile.TemporaryDirectory(prefix="hscale-rootfs-") as tmp:
        root = Path(tmp) / "root"
        log(f"offline: bootstrapping Debian {SUITE} with {', '.join(packages)} (about a minute)")
        proc = subprocess.Popen(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        for count, line in enumerate(proc.stdout, 1):
            if count % 25 == 0 or line.startswith(("E:", "W:")):
                log(f"offline: debootstrap {line.strip()}")
        if proc.wait() != 0:
            raise RuntimeError(f"debootstrap failed with code {proc.returncode}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (root / junk).glob("*"):
                if f.is_file():
                    f.unlink()
        log(f"offline: importing the root filesystem as {tag}")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "--change", 'CMD ["bash"]', "-", tag],
            stdin=tar.stdout,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tar.wait()
    return tag


def fill_wheelhouse(log: Callable[[str], None]) -> None:
    """Pinned wheels, downloaded on the host (which reaches PyPI) for the builds."""
    for context in WHEELHOUSES:
        wheelhouse = context / "wheelhouse"
        log(f"offline: downloading pinned wheels into {wheelhouse.relative_to(paths.ROOT)}/")
        wheelhouse.mkdir(exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--only-binary=:all:",
                "-d",
                str(wheelhouse),
                "-r",
                str(context / "requirements.txt"),
            ],
            check=True,
        )


def build(
    compose: Compose, offline: str, log: Callable[[str], None], store: str = "redis"
) -> dict[str, str]:
    """Build the stack's images (with STORE's, when compose has its profile); returns the
    extra environment the stack then needs."""
    if offline != "1":
        log("images: building with the pinned official base images")
        extra = registry_env()
        try:
            _with(compose, extra).run("build", on_line=_progress(log))
            return extra
        except ComposeError as exc:
            if offline == "0" or not PULL_FAILED.search(str(exc)):
                raise
            log(
                "images: no registry reachable (the base image pull failed): "
                "switching to the registry-less path"
            )
    ensure_base(log)
    if store in STORE_PACKAGES:
        ensure_base(log, store)
    fill_wheelhouse(log)
    extra = offline_env(store)
    _with(compose, extra).run("build", on_line=_progress(log))
    return extra


def _with(compose: Compose, extra: dict[str, str]) -> Compose:
    return Compose(compose.project, {**compose.env, **extra}, compose.profiles)


def _progress(log: Callable[[str], None]) -> Callable[[str], None]:
    def show(line: str) -> None:
        if line.startswith(("Step ", "#", "Successfully", "Building")):
            log(f"images: {line[:120]}")

    return show
