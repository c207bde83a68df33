"""Images for the docker and swarm runtimes, with or without a registry.

With a registry, `compose build` pulls the pinned official bases named in the
Dockerfiles. Without one (this is detected from the failed pull, or forced with OFFLINE=1)
hscale bootstraps a Debian root filesystem from Debian's packages (debootstrap), imports
it as one base image holding python3, nginx and redis-server, downloads the app's
pinned wheels into app/wheelhouse/, and builds the same Dockerfiles on top of that base.
STORE=memcached or postgres gets a second, smaller base of its own with that Debian
package (postgresql-15 brings LLVM and ICU: no reason to put them under every image).
Each base is tagged by the hash of what went into it and reused on later runs.

Your app (APP=path) gets an image of its own, built the same way from app/Dockerfile.project
in a context hscale assembles (build_project); a prebuilt IMAGE is used as it is
(ensure_image).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import yaml
from docker.auth import split_repo_name
from docker.errors import DockerException, NotFound
from docker.utils import parse_repository_tag

from hscale import paths, project_env
from hscale.errors import UsageError
from hscale.procs import StartupError
from hscale.runtimes.compose import COMPOSE_FILE, Compose, ComposeError
from hscale.target import Target

SUITE = "bookworm"
MIRROR = os.environ.get("HSCALE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# libnginx-mod-stream: swarm's forwarder, a TCP proxy publishing nginx on one address.
PACKAGES = (
    "python3", "python3-venv", "nginx-light", "libnginx-mod-stream", "redis-server",
    "ca-certificates", "bash",
)  # fmt: skip
# The stores with a base of their own, and the compose variable that names their image.
STORE_PACKAGES = {"memcached": ("bash", "memcached"), "postgres": ("bash", "postgresql-15")}
STORE_IMAGE_VARS = {"memcached": "MEMCACHED_IMAGE", "postgres": "POSTGRES_IMAGE"}
# Each image's build context holds its own wheelhouse, filled from its requirements.txt.
WHEELHOUSES = (paths.APP_DIR, paths.LOADTESTS_DIR)
WHEELHOUSE_STAMP = ".requirements.sha256"  # what the wheels were downloaded for
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
    """Pinned wheels, downloaded on the host (which reaches PyPI) for the builds. A stamp
    of the requirements they were downloaded for skips pip's resolve (about 3 s, and a
    network round trip) while the pins are unchanged."""
    for context in WHEELHOUSES:
        wheelhouse = context / "wheelhouse"
        where = f"{wheelhouse.relative_to(paths.ROOT)}/"
        stamp = wheelhouse / WHEELHOUSE_STAMP
        pins = hashlib.sha256((context / "requirements.txt").read_bytes()).hexdigest()
        if stamp.is_file() and stamp.read_text() == pins and any(wheelhouse.glob("*.whl")):
            log(f"offline: reusing the pinned wheels in {where} (requirements unchanged)")
            continue
        log(f"offline: downloading pinned wheels into {where}")
        wheelhouse.mkdir(exist_ok=True)
        stamp.unlink(missing_ok=True)
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
        stamp.write_text(pins)


def build(
    compose: Compose,
    offline: str,
    log: Callable[[str], None],
    store: str = "redis",
    skip: tuple[str, ...] = (),
) -> dict[str, str]:
    """Build the stack's images (with STORE's, when compose has its profile) but those of
    the services in `skip` (app, when your app replaces it); returns the extra environment
    the stack then needs."""
    services = buildable(compose, skip)
    if offline != "1":
        log("images: building with the pinned official base images")
        extra = registry_env()
        try:
            _with(compose, extra).run("build", *services, on_line=_progress(log))
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
    _with(compose, extra).run("build", *services, on_line=_progress(log))
    return extra


def buildable(compose: Compose, skip: tuple[str, ...]) -> list[str]:
    """The services `compose build` would build, but `skip`: none skipped, none named (a
    bare `build` is what the reference app always ran)."""
    if not skip:
        return []
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    return [
        name
        for name, svc in doc["services"].items()
        if "build" in svc
        and name not in skip
        and all(p in compose.profiles for p in svc.get("profiles", []))
    ]


def _with(compose: Compose, extra: dict[str, str]) -> Compose:
    return Compose(compose.project, {**compose.env, **extra}, compose.profiles, compose.overrides)


# -- an image of a `FROM ${BASE}` Dockerfile (cluster/) --------------------------------


def context_tag(name: str, context: Path, base: str) -> str:
    """name:<hash of the base and the context's files>: a changed file builds a new image."""
    digest = hashlib.sha256(base.encode() + b"\0")
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(context).as_posix()}\0".encode() + path.read_bytes())
    return f"{name}:{digest.hexdigest()[:12]}"


def ensure_on_base(context: Path, name: str, offline: str, log: Callable[[str], None]) -> str:
    """The image of context/Dockerfile, built once; returns its tag. BASE is the
    Dockerfile's pinned default where a registry answers and, as for the stack's images,
    the Debian base (ensure_base) where none does or OFFLINE=1."""
    pinned = dockerfile_default(context / "Dockerfile", "BASE")
    bases = {"0": [pinned], "1": [base_tag()]}.get(offline, [pinned, base_tag()])
    for base in bases:
        if image_exists(tag := context_tag(name, context, base)):
            return tag
    logfile = project_env.cache_dir() / "logs" / f"build-{name}.log"
    if offline != "1":
        try:
            return _build_on(context, name, pinned, logfile, log)
        except UsageError:
            if offline == "0" or not PULL_FAILED.search(logfile.read_text(errors="replace")):
                raise
            log(f"images: no registry reachable (pulling {pinned} failed): using the Debian base")
    return _build_on(context, name, ensure_base(log), logfile, log)


def _build_on(
    context: Path, name: str, base: str, logfile: Path, log: Callable[[str], None]
) -> str:
    tag = context_tag(name, context, base)
    log(f"images: building {tag} on {base}")
    argv = ["docker", "build", "-t", tag, "--build-arg", f"BASE={base}", str(context)]
    _docker_build(argv, logfile, log, name)
    return tag


# -- your app ------------------------------------------------------------------------

PROJECT_DOCKERFILE = paths.APP_DIR / "Dockerfile.project"
# Never in an image: version control, environments, caches.
CONTEXT_SKIP = {
    ".git", ".hg", ".venv", "venv", "__pycache__", "node_modules", ".mypy_cache",
    ".pytest_cache", ".ruff_cache", ".tox", ".nox",
}  # fmt: skip
BUILD_TIMEOUT_S = 1800


def ensure_image(tag: str) -> None:
    """IMAGE as it is: on this engine already, or pulled; else a UsageError."""
    if image_exists(tag):
        return
    try:
        pull = subprocess.run(
            ["docker", "pull", "--quiet", tag], capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        raise UsageError(
            f"IMAGE={tag} is not on this Docker engine and pulling it timed out"
        ) from None
    if pull.returncode != 0:
        why = (pull.stderr or pull.stdout).strip().splitlines()[-1:] or ["no answer"]
        raise UsageError(
            f"IMAGE={tag} is not on this Docker engine and could not be pulled ({why[0]}); "
            "build or load it first (docker build -t ..., docker load)"
        )


def image_id(tag: str) -> str | None:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def project_files(project: Path) -> Iterator[Path]:
    """The project's files that go into its image, in a stable order."""
    for path in sorted(project.iterdir()):
        if path.name in CONTEXT_SKIP or path.suffix == ".pyc":
            continue
        if path.is_dir():
            yield from project_files(path)
        elif path.is_file():
            yield path


def readable_copy(src: Path, dest: Path) -> None:
    """src's project files (project_files) under dest, readable by any user: an image's
    non-root user must read them whatever their modes on this disk."""
    for path in project_files(src):
        out = dest / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
    for d in [dest, *dest.rglob("*")]:
        d.chmod(0o755 if d.is_dir() else 0o644)


# Where your Locust file's directory is inside the load generator's containers.
OWN_LOCUST_DIR = "/hscale/locust"
OWN_LOCUST_DOCKERFILE = f"ARG BASE\nFROM ${{BASE}}\nCOPY files/ {OWN_LOCUST_DIR}/\n"


def locust_image(own_file: Path, base: str, log: Callable[[str], None]) -> str:
    """The load generator's image (`base`) with your Locust file's directory in
    OWN_LOCUST_DIR, for Locust workers on other nodes, which share no disk with this host;
    built once per content of that directory and base image."""
    context = Path(tempfile.mkdtemp(prefix="hscale-locust-image-"))
    try:
        readable_copy(own_file.parent, context / "files")
        (context / "Dockerfile").write_text(OWN_LOCUST_DOCKERFILE)
        tag = context_tag("hscale-locust-own", context, image_id(base) or base)
        if not image_exists(tag):
            log(f"images: building {tag}: {own_file.name}'s directory on {base}")
            argv = ["docker", "build", "-t", tag, "--build-arg", f"BASE={base}", str(context)]
            logfile = project_env.cache_dir() / "logs" / "build-locust-own.log"
            _docker_build(argv, logfile, log, f"the load generator's image with {own_file.name}")
        return tag
    finally:
        shutil.rmtree(context, ignore_errors=True)


def project_tag(target: Target, env: dict[str, str]) -> str:
    """hscale-app-<name>:<requirements fingerprint>-<hash of everything else that goes into
    the image>: a changed file, Dockerfile, base or pip path builds a new image."""
    assert target.project is not None
    digest = hashlib.sha256()
    for part in (target.wsgi, env.get("PYTHON_IMAGE", ""), env.get("PIP_INSTALL_ARGS", "")):
        digest.update(part.encode() + b"\0")
    for path in (PROJECT_DOCKERFILE, paths.GUNICORN_CONF):
        digest.update(path.read_bytes())
    for path in project_files(target.project):
        rel = path.relative_to(target.project).as_posix()
        digest.update(f"{rel}\0{os.access(path, os.X_OK)}\0".encode() + path.read_bytes())
    name = re.sub(r"[^a-z0-9._-]+", "-", target.name.lower()).strip("-._") or "project"
    return f"hscale-app-{name}:{target.fingerprint()}-{digest.hexdigest()[:12]}"


def build_project(
    target: Target, env: dict[str, str], log: Callable[[str], None], logfile: Path
) -> str:
    """Your project's image (built once per tag, reused after); returns its tag. `env` is
    what build() returned: the base and the pip path of the rest of the stack."""
    tag = project_tag(target, env)
    if image_exists(tag):
        log(f"images: reusing {tag}")
        return tag
    offline = bool(env.get("PIP_INSTALL_ARGS"))
    wheels = project_wheelhouse(target, env["PYTHON_IMAGE"], log) if offline else None
    with tempfile.TemporaryDirectory(prefix="hscale-context-") as tmp:
        context = assemble_context(target, Path(tmp), wheels)
        log(f"images: building {tag} from {target.project}")
        install = "-r requirements.txt" if target.requirements().suffix == ".txt" else "."
        args = {
            "PYTHON_IMAGE": env["PYTHON_IMAGE"],
            "PIP_INSTALL_ARGS": env.get("PIP_INSTALL_ARGS", ""),
            "INSTALL": install,
            "GUNICORN_PIN": project_env.gunicorn_pin(),
            "WSGI": target.wsgi,
        }
        argv = ["docker", "build", "-t", tag, "--label", f"hscale.project={target.project}"]
        argv += [x for k, v in args.items() for x in ("--build-arg", f"{k}={v}")]
        _docker_build([*argv, str(context)], logfile, log, f"APP={target.project}")
    return tag


def assemble_context(target: Target, root: Path, wheels: Path | None) -> Path:
    """The build context: the project (readable by the image's non-root user whatever its
    modes here), gunicorn's settings, the Dockerfile, and (registry-less) the wheels."""
    assert target.project is not None
    shutil.copy(PROJECT_DOCKERFILE, root / "Dockerfile")
    shutil.copy(paths.GUNICORN_CONF, root / "gunicorn.conf.py")
    for path in project_files(target.project):
        dest = root / "project" / path.relative_to(target.project)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        dest.chmod(0o755 if os.access(path, os.X_OK) else 0o644)
    for d in [root, *root.rglob("*")]:
        if d.is_dir():
            d.chmod(0o755)
    (root / "project").mkdir(exist_ok=True)
    wheelhouse = root / "wheelhouse"
    if wheels is None:
        wheelhouse.mkdir()
    else:
        shutil.copytree(wheels, wheelhouse, ignore=shutil.ignore_patterns(".complete"))
    return root


def project_wheelhouse(target: Target, base: str, log: Callable[[str], None]) -> Path:
    """Wheels of the project's requirements and gunicorn, downloaded on this host (which
    reaches PyPI) for the registry-less build on `base`; kept per requirements fingerprint."""
    wheelhouse = project_env.cache_dir() / "wheelhouses" / f"{target.name}-{target.fingerprint()}"
    if (wheelhouse / ".complete").is_file():
        return wheelhouse
    req = target.requirements()
    log(f"offline: downloading the wheels of {req} into {wheelhouse}")
    wheelhouse.mkdir(parents=True, exist_ok=True)
    what = ["-r", req.name] if req.suffix == ".txt" else pyproject_requirements(req)
    _download(wheelhouse, [*what, project_env.gunicorn_pin()], req)
    _complete_for(base, wheelhouse, req, [*what, project_env.gunicorn_pin()], log)
    (wheelhouse / ".complete").write_text(f"{req}\n")
    return wheelhouse


def _download(wheelhouse: Path, what: list[str], req: Path) -> None:
    """pip download on this host (paths in `what` relative to the requirements' folder)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--only-binary=:all:", "-d", str(wheelhouse), *what],
        capture_output=True, text=True, cwd=req.parent, timeout=project_env.INSTALL_TIMEOUT_S,
    )  # fmt: skip
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise UsageError(f"downloading the wheels of {req} failed (registry-less path): {tail}")


MISSING = re.compile(r"No matching distribution found for ([^;\s]+)")


def _complete_for(
    base: str, wheelhouse: Path, req: Path, what: list[str], log: Callable[[str], None]
) -> None:
    """This host's pip picks dependencies by this host's Python, the base's may be older
    (Debian's 3.11.2: redis needs async-timeout below 3.11.3). Resolve in the base, with no
    network, and download what it misses, until nothing is."""
    script = 'python3 -m venv /tmp/v && /tmp/v/bin/pip install --dry-run --quiet --no-index \
--disable-pip-version-check --find-links=/wheelhouse "$@"'
    for _ in range(10):
        done = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "-v", f"{wheelhouse}:/wheelhouse:ro",
             "-v", f"{req.parent}:/project:ro", "-w", "/project", base, "sh", "-c", script,
             "sh", *what],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
        )  # fmt: skip
        if done.returncode == 0:
            return
        missing = MISSING.search(done.stdout + done.stderr)
        if not missing:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise UsageError(f"the wheels of {req} do not install on {base}: {tail}")
        log(f"offline: {base}'s Python also needs {missing.group(1)}: downloading it")
        _download(wheelhouse, [missing.group(1)], req)
    raise UsageError(f"the wheels of {req} still miss dependencies on {base} after 10 rounds")


def pyproject_requirements(pyproject: Path) -> list[str]:
    """What installing a pyproject.toml project needs without an index: its dependencies
    and its build backend (pip builds it in an isolated environment from the wheelhouse)."""
    doc = tomllib.loads(pyproject.read_text())
    build = doc.get("build-system", {}).get("requires", ["setuptools>=40.8.0", "wheel"])
    return [*doc.get("project", {}).get("dependencies", []), *build]


def _docker_build(argv: list[str], logfile: Path, log: Callable[[str], None], what: str) -> None:
    """`docker build`, its output in logfile; a failure is the project's: a UsageError
    with the build's last lines."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    show = _progress(log)
    with open(logfile, "w") as out:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            show(line.rstrip())
        code = proc.wait(timeout=BUILD_TIMEOUT_S)
    if code != 0:
        lines = [x for x in logfile.read_text(errors="replace").splitlines() if x.strip()]
        tail = " | ".join(lines[-3:])
        raise UsageError(f"building the image of {what} failed (log {logfile}): {tail}")


def _progress(log: Callable[[str], None]) -> Callable[[str], None]:
    def show(line: str) -> None:
        if line.startswith(("Step ", "#", "Successfully", "Building")):
            log(f"images: {line[:120]}")

    return show


def push(
    names: list[str], push_to: str, pull_from: str, log: Callable[[str], None] = print
) -> dict[str, str]:
    """Push images of this host's engine to a registry, `push_to` (host[:port][/path]) as
    this host reaches it; {image: the reference nodes pull it by, under `pull_from`}.
    The two differ only for the test cluster, whose registry this host reaches on
    127.0.0.1; a real registry has one name for both."""
    client = docker.from_env(timeout=600)
    refs = {}
    for image in names:
        repo, tag = parse_repository_tag(image)
        if tag and tag.startswith("sha256:"):  # pinned by digest: push under a tag of it
            tag = f"sha256-{tag.removeprefix('sha256:')[:16]}"
        tag = tag or "latest"
        path = split_repo_name(repo)[1]  # without the registry it came from, if any
        pushed = f"{push_to}/{path}"
        try:
            client.images.get(image).tag(pushed, tag)
        except NotFound:
            raise UsageError(f"image {image} is not on this Docker engine") from None
        log(f"images: pushing {image} to {push_to}")
        try:
            for line in client.api.push(pushed, tag, stream=True, decode=True):
                if "error" in line:
                    raise StartupError(f"pushing {image} to {push_to} failed: {line['error']}")
        finally:
            with contextlib.suppress(DockerException):  # the name only, not the layers
                client.images.remove(f"{pushed}:{tag}")
        refs[image] = f"{pull_from}/{path}:{tag}"
    return refs
