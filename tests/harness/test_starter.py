"""`hscale init`: the URL map read from a real Flask app in a subprocess, the Locust file
written from it (valid Python, the expected tasks, run by Locust against the app), the
refusal to overwrite, and every error as one line with exit code 2.

The project's venv is this test's own interpreter (it has Flask): building one with pip
is project_env's job and its tests', not these.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hscale import cli, project_env, starter
from hscale.errors import UsageError

APP = """\
from flask import Blueprint, Flask

app = Flask(__name__)
admin = Blueprint("admin", __name__, static_folder="assets", url_prefix="/admin")


@app.get("/")
def index():
    return "home"


@app.route("/items", methods=["GET", "POST"])
def items():
    return {"items": []}


@app.route("/items/<int:item_id>", methods=["GET", "DELETE"])
def item(item_id):
    return {"id": item_id}


@app.get("/search")
def search():
    return {"hits": []}


@admin.put("/settings/<name>")
def setting(name):
    return {"name": name}


app.register_blueprint(admin)
"""
PLAIN_WSGI = """\
class App:
    def __call__(self, environ, start_response):
        return []


app = App()
"""
TASKS = {"get_index": "/", "get_items": "/items", "get_search": "/search"}
STUBS = {  # commented out: not a GET, or it has arguments
    "post_items": "POST /items",
    "get_items_item_id": "GET /items/<int:item_id>",
    "delete_items_item_id": "DELETE /items/<int:item_id>",
    "put_admin_settings_name": "PUT /admin/settings/<name>",
}


def project(root: Path, source: str = APP, module: str = "app") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(source)
    (root / "requirements.txt").write_text("flask\n")
    return root


@pytest.fixture
def own_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's venv is this interpreter; nothing is installed."""
    monkeypatch.setattr(project_env, "ensure_venv", lambda target, log=None: Path(sys.executable))
    monkeypatch.setattr(starter, "_venv_built", lambda target: True)


def run_init(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["init", *args])
    out, err = capsys.readouterr()
    return code, out, err


def task_methods(source: str) -> dict[str, str]:
    """{method: its first request's path (or its source)} of the User class's @tasks."""
    tree = ast.parse(source)
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert [b.id for b in cls.bases if isinstance(b, ast.Name)] == ["FastHttpUser"]
    found = {}
    for fn in cls.body:
        if isinstance(fn, ast.FunctionDef) and any(
            isinstance(d, ast.Name) and d.id == "task" for d in fn.decorator_list
        ):
            call = next(n for n in ast.walk(fn) if isinstance(n, ast.Call))
            arg = call.args[0]
            found[fn.name] = arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg)
    return found


# --- reading the URL map -----------------------------------------------------------------


def test_read_routes_imports_the_app_and_lists_its_rules(tmp_path: Path):
    root = project(tmp_path / "shop")
    routes = starter.read_routes(sys.executable, root, "app:app")
    assert isinstance(routes, list)
    by_rule = {r.rule: r for r in routes}
    assert by_rule["/items"].methods == ("GET", "POST")  # HEAD and OPTIONS dropped
    assert by_rule["/items/<int:item_id>"].arguments == ("item_id",)
    assert by_rule["/items/<int:item_id>"].methods == ("DELETE", "GET")
    statics = {r.endpoint for r in routes if r.static}
    assert statics == {"static", "admin.static"}


def test_a_factory_is_called(tmp_path: Path):
    factory = "def create_app():\n    return app\n\n\napp = Flask(__name__)"
    source = APP.replace("app = Flask(__name__)", factory)
    root = project(tmp_path / "factory", source, module="factory")
    routes = starter.read_routes(sys.executable, root, "factory:create_app()")
    assert isinstance(routes, list) and "/search" in {r.rule for r in routes}


def test_a_wsgi_app_without_url_map_is_named(tmp_path: Path):
    root = project(tmp_path / "plain", PLAIN_WSGI)
    assert starter.read_routes(sys.executable, root, "app:app") == "app.App"


# --- rendering ---------------------------------------------------------------------------


def test_rendered_file_has_a_task_per_get_route_and_the_rest_commented_out(tmp_path: Path):
    root = project(tmp_path / "shop")
    routes = starter.read_routes(sys.executable, root, "app:app")
    source = starter.render(routes, "my-shop", "app:app", "locustfile.py")
    assert task_methods(source) == TASKS
    assert "class MyShopUser(FastHttpUser):" in source
    for name, what in STUBS.items():
        assert f"    # def {name}(self) -> None:  # {what}" in source
    assert "static" not in source and "assets" not in source
    assert 'name="/items/<int:item_id>"' in source and "item_id = 1" in source
    assert 'self.client.put(f"/admin/settings/{name}", json={}' in source
    imports = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
    assert [n.module for n in imports] == ["locust"]  # nothing from hscale
    # The stubs are code: uncommented, the file still parses and has every route.
    uncommented = source.replace("    # ", "    ").replace("    #\n", "\n")
    assert set(task_methods(uncommented)) == set(TASKS) | set(STUBS)


def test_non_flask_app_gets_one_get_task_and_says_so():
    source = starter.render("app.App", "plain", "app:app", "locustfile.py")
    assert task_methods(source) == {"get_index": "/"}
    assert "app:app (a app.App) is not a Flask app" in source


def test_an_app_without_plain_get_routes_still_parses():
    routes = [starter.Route("/orders", "orders", ("POST",), ())]
    source = starter.render(routes, "api", "app:app", "locustfile.py")
    assert task_methods(source) == {}
    assert "# def post_orders(self) -> None:  # POST /orders" in source


@pytest.fixture
def served_app(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The test app served over HTTP (werkzeug, in a thread): (project, base URL)."""
    from werkzeug.serving import make_server

    root = project(tmp_path / "served", module="served_app")
    sys.path.insert(0, str(root))
    try:
        import served_app  # type: ignore[import-not-found]

        server = make_server("127.0.0.1", 0, served_app.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield root, f"http://127.0.0.1:{server.port}"
        server.shutdown()
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("served_app", None)


def test_locust_runs_the_written_file(
    served_app: tuple[Path, str], own_venv: None, capsys: pytest.CaptureFixture[str]
):
    root, url = served_app
    assert run_init(capsys, str(root))[0] == 0
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(root / "locustfile.py"), "--headless",
         "-u", "3", "-r", "3", "-t", "2s", "--host", url, "--json", "--only-summary",
         "--loglevel", "ERROR"],
        capture_output=True, text=True, timeout=60, cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stats = {s["name"]: s for s in json.loads(done.stdout)}
    assert set(stats) == set(TASKS.values())
    for s in stats.values():
        assert s["num_requests"] > 0 and s["num_failures"] == 0, s


# --- the command -------------------------------------------------------------------------


def test_init_writes_then_refuses_to_overwrite_unless_forced(
    tmp_path: Path, own_venv: None, capsys: pytest.CaptureFixture[str]
):
    root = project(tmp_path / "shop")
    code, out, err = run_init(capsys, str(root))
    written = root / "locustfile.py"
    assert code == 0 and err == ""
    assert out.strip() == f"wrote {written}: 3 task(s), 4 route(s) to fill in (commented out)"
    assert task_methods(written.read_text()) == TASKS

    written.write_text("# mine\n")
    code, out, err = run_init(capsys, str(root))
    assert (code, out) == (2, "")
    assert err == f"hscale: error: {written} exists; --force overwrites it\n"
    assert written.read_text() == "# mine\n"

    assert run_init(capsys, str(root), "--force")[0] == 0
    assert task_methods(written.read_text()) == TASKS


def test_init_out_and_app_module(
    tmp_path: Path, own_venv: None, capsys: pytest.CaptureFixture[str]
):
    root = project(tmp_path / "two")
    (root / "other.py").write_text("from flask import Flask\n\nother = Flask(__name__)\n")
    out = tmp_path / "load.py"
    code, stdout, _ = run_init(capsys, str(root), "--app-module", "other:other", "--out", str(out))
    assert code == 0 and str(out) in stdout
    assert not (root / "locustfile.py").exists()
    assert "locust -f load.py" in out.read_text()


def test_init_non_flask_says_so_on_stdout(
    tmp_path: Path, own_venv: None, capsys: pytest.CaptureFixture[str]
):
    root = project(tmp_path / "plain", PLAIN_WSGI)
    code, out, _ = run_init(capsys, str(root))
    assert code == 0 and "is not a Flask app" in out
    assert task_methods((root / "locustfile.py").read_text()) == {"get_index": "/"}


ERRORS = {
    "import-error": (
        "import nothing_here_at_all\nfrom flask import Flask\napp = Flask(__name__)\n",
        [],
        "importing app failed: ModuleNotFoundError: No module named 'nothing_here_at_all' "
        "(app.py:1)",
    ),
    "factory-raises": (
        "from flask import Flask\n\ndef create_app():\n    raise RuntimeError('no config')\n",
        [],
        "app:create_app() failed: RuntimeError: no config (app.py:4)",
    ),
    "no-app": ("x = 1\n", [], "no WSGI app found in"),
    "two-apps": (
        "from flask import Flask\na = Flask(__name__)\nb = Flask(__name__)\n",
        [],
        "2 WSGI apps",
    ),
    "no-attribute": (APP, ["--app-module", "app:nope"], "module app has no attribute 'nope'"),
    "bad-spec": (APP, ["--app-module", "app.py"], "is not package.module:app"),
    "exits": (
        "import sys\nfrom flask import Flask\napp = Flask(__name__)\nsys.exit(3)\n",
        [],
        "importing app failed: SystemExit: 3",
    ),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_are_one_line_and_exit_2(
    case: str, tmp_path: Path, own_venv: None, capsys: pytest.CaptureFixture[str]
):
    source, args, expected = ERRORS[case]
    root = project(tmp_path / case, source)
    code, out, err = run_init(capsys, str(root), *args)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("hscale: error: "), err
    assert expected in err
    assert not (root / "locustfile.py").exists()


def test_errors_before_anything_is_imported(
    tmp_path: Path, own_venv: None, capsys: pytest.CaptureFixture[str]
):
    missing = tmp_path / "missing"
    assert run_init(capsys, str(missing))[2] == f"hscale: error: {missing} is not a directory\n"
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "app.py").write_text(APP)
    err = run_init(capsys, str(bare))[2]
    assert err.count("\n") == 1 and "has no requirements.txt or pyproject.toml" in err
    root = project(tmp_path / "shop")
    err = run_init(capsys, str(root), "--out", str(tmp_path / "no" / "dir.py"))[2]
    assert err.count("\n") == 1 and "is not a directory" in err


def test_import_that_kills_the_interpreter_is_one_line(tmp_path: Path):
    root = project(tmp_path / "dies", "import os\nos._exit(5)\n")
    with pytest.raises(UsageError, match=r"stopped the interpreter: exit code 5$"):
        starter.read_routes(sys.executable, root, "app:app")
