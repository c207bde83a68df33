"""What runs as the replicas: the reference app (the default), your project (APP=path, a
WSGI app and its requirements) or your prebuilt image (IMAGE=name:tag), and the Locust
file that loads it. Resolved once from the settings, before anything starts; every
problem is a one-line UsageError."""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path

from hscale import paths, stores
from hscale.errors import UsageError
from hscale.settings import Settings

REFERENCE_WSGI = "refapp:create_app()"
REFERENCE_HEALTH = "/readyz"
USER_HEALTH = "/"
# The reference app's own endpoints that the consistency check and the endpoint
# verification need; other targets are verified by a smoke run of their Locust file.
REQUIREMENT_FILES = ("requirements.txt", "pyproject.toml")
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", "node_modules", "tests", "build", "dist"}


@dataclass(frozen=True)
class Target:
    kind: str  # "reference", "project" (APP=) or "image" (IMAGE=)
    name: str  # for titles and the manifest
    wsgi: str  # gunicorn's app: "module:app" or "package:create_app()"
    health_path: str
    port: int  # the app's port inside a container
    locustfile: Path
    project: Path | None = None  # APP=, resolved
    image: str | None = None  # IMAGE=
    init: str | None = None  # APP_INIT, a shell command

    @property
    def reference(self) -> bool:
        return self.kind == "reference"

    @property
    def app_dir(self) -> Path:
        """The directory gunicorn imports the app from (its chdir)."""
        return self.project if self.project is not None else paths.APP_DIR

    def requirements(self) -> Path:
        """APP's requirements.txt, else its pyproject.toml (installed as a package)."""
        assert self.project is not None
        for name in REQUIREMENT_FILES:
            if (self.project / name).is_file():
                return self.project / name
        raise UsageError(f"APP={self.project} has no requirements.txt or pyproject.toml")

    def fingerprint(self) -> str:
        """Changes whenever what must be installed changes: names the project's venv and
        image tag, so an unchanged project is built once."""
        if self.project is None:
            return ""
        req = self.requirements()
        digest = hashlib.sha256(req.name.encode() + req.read_bytes())
        digest.update((paths.APP_DIR / "requirements.txt").read_bytes())  # gunicorn's pin
        return digest.hexdigest()[:12]

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "name": self.name,
            "wsgi": self.wsgi if self.kind != "image" else None,
            "project": str(self.project) if self.project else None,
            "image": self.image,
            "port": self.port,
            "health_path": self.health_path,
            "init": self.init,
            "locustfile": str(self.locustfile),
            "consistency_checked": self.reference,
        }


def scenario_name(target: Target, s: Settings) -> str:
    """What loaded the app: the scenario, or the name of your Locust file."""
    if target.locustfile == paths.locustfile(s.scenario):
        return s.scenario
    return target.locustfile.name


def resolve(s: Settings) -> Target:
    """The target the settings name; raises UsageError before anything starts."""
    if s.app and s.image:
        raise UsageError("APP and IMAGE name two apps; give one")
    user = bool(s.app or s.image)
    entry = stores.STORES[s.store]
    if user and not entry.for_user_apps:
        raise UsageError(
            f"STORE={s.store} is the reference app's; with your app use none, "
            f"{', '.join(n for n, e in stores.STORES.items() if e.for_user_apps and n != 'none')}"
        )
    if not user and not entry.for_reference:
        raise UsageError(f"STORE={s.store} needs APP or IMAGE (the reference app needs a store)")
    if not user:
        for knob, value in (("APP_MODULE", s.app_module), ("APP_INIT", s.app_init)):
            if value:
                raise UsageError(f"{knob} applies to APP or IMAGE, not the reference app")
        locustfile = _locustfile(s.locustfile) if s.locustfile else paths.locustfile(s.scenario)
        return Target(
            "reference", "reference app", REFERENCE_WSGI, s.health_path or REFERENCE_HEALTH,
            8000, locustfile,
        )  # fmt: skip
    if s.image:
        if s.runtime == "local":
            raise UsageError("IMAGE needs RUNTIME=docker or swarm; with RUNTIME=local use APP")
        if s.app_module:
            raise UsageError("APP_MODULE applies to APP; an IMAGE runs its own command")
        if not s.locustfile:
            raise UsageError("IMAGE needs LOCUSTFILE, the Locust file that loads it")
        return Target(
            "image", s.image, "", s.health_path or USER_HEALTH, s.app_container_port,
            _locustfile(s.locustfile), image=s.image, init=s.app_init,
        )  # fmt: skip
    assert s.app is not None
    project = Path(s.app).expanduser().resolve()
    if not project.is_dir():
        raise UsageError(f"APP={s.app} is not a directory")
    if not any((project / name).is_file() for name in REQUIREMENT_FILES):
        raise UsageError(f"APP={s.app} has no requirements.txt or pyproject.toml")
    wsgi = s.app_module or guess_wsgi(project)
    _check_wsgi(wsgi)
    default_locustfile = project / "locustfile.py"
    if s.locustfile:
        locustfile = _locustfile(s.locustfile)
    elif default_locustfile.is_file():
        locustfile = default_locustfile
    else:
        raise UsageError(
            f"APP={s.app} has no locustfile.py: give LOCUSTFILE=..., or write a starter "
            f"with `hscale init {s.app}`"
        )
    return Target(
        "project", project.name, wsgi, s.health_path or USER_HEALTH, 8000, locustfile,
        project=project, init=s.app_init,
    )  # fmt: skip


def _locustfile(raw: str) -> Path:
    path = Path(raw).expanduser().resolve()
    if not path.is_file() or path.suffix != ".py":
        raise UsageError(f"LOCUSTFILE={raw} is not a .py file")
    return path


def _check_wsgi(spec: str) -> None:
    module, _, attr = spec.partition(":")
    ok_module = all(part.isidentifier() for part in module.split("."))
    ok_attr = attr.removesuffix("()").isidentifier()
    if not (ok_module and ok_attr):
        raise UsageError(f"APP_MODULE={spec} is not package.module:app or package:create_app()")


def candidates(project: Path) -> list[str]:
    """WSGI apps a project defines, read from its source without importing it: a module
    level `name = Flask(...)` (or Quart, Bottle, Falcon's App) as "module:name", and a
    module level `def create_app` as "module:create_app()"."""
    found: list[str] = []
    for path in sorted(_sources(project)):
        module = ".".join(path.relative_to(project).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        try:
            tree = ast.parse(path.read_text(errors="replace"), str(path))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in ("create_app", "make_app"):
                found.append(f"{module}:{node.name}()")
            elif isinstance(node, ast.Assign) and _makes_app(node.value):
                found += [f"{module}:{t.id}" for t in node.targets if isinstance(t, ast.Name)]
    return found


def guess_wsgi(project: Path) -> str:
    found = candidates(project)
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(
            f"no WSGI app found in {project} (a module-level `app = Flask(__name__)` or "
            "`def create_app`); name it with APP_MODULE=package.module:app"
        )
    raise UsageError(f"{len(found)} WSGI apps in {project} ({', '.join(found)}); pick one "
                     "with APP_MODULE")  # fmt: skip


def _sources(project: Path, depth: int = 2) -> list[Path]:
    """Python files at most `depth` directories down, outside tests and environments."""
    out: list[Path] = []
    for path in project.iterdir():
        if path.is_file() and path.suffix == ".py" and path.name != "locustfile.py":
            out.append(path)
        elif depth > 1 and path.name not in SKIP_DIRS and (path / "__init__.py").is_file():
            out += _sources(path, depth - 1)
    return out


def _makes_app(value: ast.expr) -> bool:
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("Flask", "Quart", "Bottle", "App", "API") or name.endswith("WSGIApp")
