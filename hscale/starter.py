"""`hscale init APP`: a starter Locust file written from the app's URL map.

The app is imported with the project's own venv (project_env.ensure_venv), in a
subprocess running READ_ROUTES, which prints Flask's url_map as JSON. GET routes without
arguments become tasks; every other route is written as a commented-out task naming its
methods and arguments, for the user to fill in. A WSGI app without a url_map gets one
GET / task. The file imports nothing from hscale: hscale attaches its hooks from outside.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hscale import project_env
from hscale import target as targets
from hscale.console import err_console
from hscale.errors import UsageError

IMPORT_TIMEOUT_S = 120
# The store variables hscale hands a replica, so an app that reads one at import time
# imports here too; only set when absent, and nothing connects: no request is served.
PLACEHOLDER_ENV = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "MEMCACHED_SERVERS": "127.0.0.1:11211",
    "DATABASE_URL": "postgresql://127.0.0.1:5432/app",
}
IGNORED_METHODS = {"HEAD", "OPTIONS"}  # Flask adds them to every rule

# Run by the project's python with argv: project dir, WSGI spec, result file. Writes
# {"routes": [...]} for an app with a url_map, {"routes": null, "type": ...} for
# another WSGI app, {"error": "one line"} when the app does not load.
READ_ROUTES = r"""
import importlib, json, sys, traceback

project, spec, out = sys.argv[1:4]
sys.path.insert(0, project)

def where(exc):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(project)]
    return f" ({frames[-1].filename[len(project) + 1:]}:{frames[-1].lineno})" if frames else ""

def result():
    module, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(module)
    except BaseException as exc:
        first = (str(exc).splitlines() or [""])[0]
        return {"error": f"importing {module} failed: {type(exc).__name__}: {first}{where(exc)}"}
    name = attr.removesuffix("()")
    if not hasattr(mod, name):
        return {"error": f"module {module} has no attribute {name!r}"}
    app = getattr(mod, name)
    if attr.endswith("()"):
        try:
            app = app()
        except BaseException as exc:
            first = (str(exc).splitlines() or [""])[0]
            return {"error": f"{spec} failed: {type(exc).__name__}: {first}{where(exc)}"}
    url_map = getattr(app, "url_map", None)
    if url_map is None or not hasattr(url_map, "iter_rules"):
        kind = type(app)
        prefix = "" if kind.__module__ == "builtins" else kind.__module__ + "."
        return {"routes": None, "type": prefix + kind.__qualname__}
    return {"routes": [
        {"rule": r.rule, "endpoint": str(r.endpoint), "methods": sorted(r.methods or ["GET"]),
         "arguments": sorted(r.arguments)}
        for r in url_map.iter_rules()
    ]}

found = result()
with open(out, "w") as f:
    json.dump(found, f)
"""


@dataclass(frozen=True)
class Route:
    rule: str  # "/users/<int:user_id>"
    endpoint: str
    methods: tuple[str, ...]  # without HEAD and OPTIONS
    arguments: tuple[str, ...]

    @property
    def static(self) -> bool:
        return self.endpoint == "static" or self.endpoint.endswith(".static")


def read_routes(python: Path | str, project: Path, wsgi: str) -> list[Route] | str:
    """The app's routes, or the type name of a WSGI app that has no url_map. Imports the
    app with `python` in a subprocess; UsageError (one line) when it does not load."""
    env = {**os.environ, **{k: v for k, v in PLACEHOLDER_ENV.items() if k not in os.environ}}
    with tempfile.TemporaryDirectory(prefix="hscale-init-") as tmp:
        out = Path(tmp) / "routes.json"
        try:
            done = subprocess.run(
                [str(python), "-c", READ_ROUTES, str(project), wsgi, str(out)],
                cwd=project, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                text=True, timeout=IMPORT_TIMEOUT_S,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise UsageError(f"importing {wsgi} took over {IMPORT_TIMEOUT_S} s") from None
        if not out.is_file():
            last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise UsageError(f"importing {wsgi} stopped the interpreter: {last}")
        data = json.loads(out.read_text())
    if "error" in data:
        raise UsageError(str(data["error"]))
    if data["routes"] is None:
        return str(data["type"])
    return [
        Route(
            r["rule"],
            r["endpoint"],
            tuple(m for m in r["methods"] if m not in IGNORED_METHODS),
            tuple(r["arguments"]),
        )
        for r in data["routes"]
    ]


# --- rendering ---------------------------------------------------------------------------

_ARG = re.compile(r"<(?:(?P<conv>[A-Za-z_]\w*)(?:\([^)]*\))?:)?(?P<name>[A-Za-z_]\w*)>")
EXAMPLE_VALUES = {"int": "1", "float": "1.5", "uuid": '"00000000-0000-0000-0000-000000000000"'}
BODY_METHODS = {"POST", "PUT", "PATCH"}
CLIENT_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _slug(rule: str) -> str:
    """A rule as a name: /api/users/<int:user_id> -> api_users_user_id; / -> index."""
    text = _ARG.sub(lambda m: m["name"], rule)
    slug = re.sub(r"\W+", "_", text).strip("_").lower()
    return slug or "index"


class _Names:
    """Method names, unique within the class."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, method: str, rule: str) -> str:
        base = f"{method.lower()}_{_slug(rule)}"
        base = re.sub(r"\W", "_", base)
        if keyword.iskeyword(base):
            base += "_"
        name, i = base, 2
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name


def _call(method: str, path: str, name: str | None) -> str:
    """The client call for one request."""
    verb = method.lower()
    args = [path]
    if method in BODY_METHODS:
        args.append("json={}")  # the body the view expects
    if name:
        args.append(f"name={json.dumps(name)}")
    if method in CLIENT_METHODS:
        return f"self.client.{verb}({', '.join(args)})"
    return f"self.client.request({json.dumps(method)}, {', '.join(args)})"


def _stub(route: Route, method: str, name: str) -> list[str]:
    """A commented-out task for a route that needs arguments or is not a GET."""
    lines = ["@task", f"def {name}(self) -> None:  # {method} {route.rule}"]
    found = {m["name"]: m["conv"] for m in _ARG.finditer(route.rule)}
    for arg in route.arguments:
        conv = found.get(arg)
        value = EXAMPLE_VALUES.get(conv or "", '"example"')
        shown = f"<{conv}:{arg}>" if conv else f"<{arg}>"
        lines.append(f"    {arg} = {value}  # {shown}: a value your app knows")
    if route.arguments:
        path = "f" + json.dumps(_ARG.sub(lambda m: "{" + m["name"] + "}", route.rule))
        lines.append(f"    {_call(method, path, route.rule)}")
    else:
        lines.append(f"    {_call(method, json.dumps(route.rule), None)}")
    return ["    # " + line if line else "    #" for line in lines]


HEADER = '''"""A starter Locust file for {name}, written by `hscale init`.

{what}
Set the weights (@task(3)) to your real traffic. hscale gives the host and the pacing;
to try it alone: locust -f {file} --host http://127.0.0.1:8000
"""

from locust import FastHttpUser, task


class {cls}(FastHttpUser):
'''


def render(routes: list[Route] | str, name: str, wsgi: str, file_name: str) -> str:
    """The Locust file for `routes` (or, for a non-Flask app, its type name)."""
    cls = re.sub(r"\W", "", name.title().replace("-", "").replace("_", "")) or "App"
    cls = (cls if cls[0].isalpha() else "App" + cls) + "User"
    names = _Names()
    if isinstance(routes, str):
        what = (
            f"{wsgi} (a {routes}) is not a Flask app: without a URL map its routes are\n"
            "unknown, so this file has one GET / task; add a task per route your users call."
        )
        body = ["    @task", "    def get_index(self) -> None:", '        self.client.get("/")']
    else:
        tasks: list[list[str]] = []
        stubs: list[list[str]] = []
        for route in sorted((r for r in routes if not r.static), key=lambda r: r.rule):
            for method in route.methods:
                fn = names(method, route.rule)
                if method == "GET" and not route.arguments:
                    call = _call(method, json.dumps(route.rule), None)
                    tasks.append(["    @task", f"    def {fn}(self) -> None:", f"        {call}"])
                else:
                    stubs.append(_stub(route, method, fn))
        what = (
            f"From the URL map of {wsgi}: its GET routes without arguments are tasks;\n"
            "its other routes are below, commented out: fill in their arguments and\n"
            "bodies, and uncomment the ones to load."
        )
        if not tasks:
            what += "\nThe app has no GET route without arguments: uncomment a task below."
            tasks.append(["    pass  # uncomment a task below"])
        body = [line for block in tasks + stubs for line in [*block, ""]][:-1]
    header = HEADER.format(name=name, what=what, file=file_name, cls=cls)
    return header + "\n".join(body) + "\n"


# --- the command -------------------------------------------------------------------------


def _venv_built(target: targets.Target) -> bool:
    """Whether ensure_venv will find the venv ready (the same path it builds), so that a
    first, slow install is announced."""
    venv = project_env.cache_dir() / "venvs" / f"{target.name}-{target.fingerprint()}"
    return (venv / ".complete").is_file()


def write_starter(
    app: str, app_module: str | None = None, out: str | None = None, force: bool = False
) -> tuple[Path, str]:
    """Write the starter file; returns its path and a one-line summary for stdout."""
    project = Path(app).expanduser().resolve()
    if not project.is_dir():
        raise UsageError(f"{app} is not a directory")
    path = Path(out).expanduser().resolve() if out else project / "locustfile.py"
    if path.exists() and not force:
        raise UsageError(f"{path} exists; --force overwrites it")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent} is not a directory")
    wsgi = app_module or targets.guess_wsgi(project)
    targets._check_wsgi(wsgi)
    target = targets.Target(
        "project", project.name, wsgi, targets.USER_HEALTH, 8000, path, project=project
    )
    target.requirements()  # UsageError when the project has neither file
    if not _venv_built(target):
        err_console.print(
            f"hscale: installing {project.name}'s requirements into its venv (once)...",
            highlight=False,
        )
    python = project_env.ensure_venv(target)
    routes = read_routes(python, project, wsgi)
    path.write_text(render(routes, project.name, wsgi, path.name))
    if isinstance(routes, str):
        return path, f"wrote {path}: {wsgi} (a {routes}) is not a Flask app: one GET / task"
    used = [r for r in routes if not r.static]
    tasks = sum(1 for r in used for m in r.methods if m == "GET" and not r.arguments)
    stubs = sum(len(r.methods) for r in used) - tasks
    return path, f"wrote {path}: {tasks} task(s), {stubs} route(s) to fill in (commented out)"
