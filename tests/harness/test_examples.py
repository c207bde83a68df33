"""examples/: each is a project `make bench APP=examples/<name>` can run (one WSGI app
that hscale's guess finds, pinned requirements, a Locust file that imports nothing from
hscale), and each app answers its Locust files' requests against the real store.

The Locust files' tasks are called with a client that forwards to Flask's test client
(and a stand-in `locust` module: importing the real one would monkey-patch this process
with gevent), so every request a Locust user would send is checked here in seconds.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import secrets
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hscale_testkit import ROOT

from hscale import target

EXAMPLES = ROOT / "examples"
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "requirements.txt").is_file())
STORE = {"stateless-redis": "redis", "hot-row": "postgres"}  # each example's STORE=
PIN = re.compile(r"^[A-Za-z0-9_.-]+(\[[a-z,]+\])?==[0-9][0-9A-Za-z.]*$")


def locustfiles(name: str) -> list[Path]:
    return sorted((EXAMPLES / name).glob("locustfile*.py"))


LOCUSTFILES = [p for n in NAMES for p in locustfiles(n)]


def test_there_are_examples_and_each_names_its_store():
    assert len(NAMES) >= 2
    assert set(NAMES) == set(STORE)


@pytest.mark.parametrize("name", NAMES)
def test_example_is_a_project_hscale_can_run(name: str):
    root = EXAMPLES / name
    assert len(target.candidates(root)) == 1, target.candidates(root)
    assert target.guess_wsgi(root) == target.candidates(root)[0]
    assert (root / "README.md").is_file() and (root / "locustfile.py").is_file()
    lines = [
        line.strip()
        for line in (root / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines and all(PIN.match(line) for line in lines), lines
    assert _pin(lines, "flask").split(".")[0] == _pin(_reference(), "flask").split(".")[0]


def _reference() -> list[str]:
    return (ROOT / "app" / "requirements.txt").read_text().splitlines()


def _pin(lines: list[str], package: str) -> str:
    return next(line.split("==")[1] for line in lines if line.lower().startswith(package + "=="))


@pytest.mark.parametrize("path", LOCUSTFILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_locustfile_has_a_user_class_and_no_hscale_import(path: Path):
    tree = ast.parse(path.read_text())
    users = [
        c for c in tree.body
        if isinstance(c, ast.ClassDef)
        and any(isinstance(b, ast.Name) and b.id.endswith("User") for b in c.bases)
    ]  # fmt: skip
    assert users, f"{path}: no User class"
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in modules if m and "hscale" in m}, modules


# --- the apps against their stores, through their Locust files ----------------------------


class Client:
    """What a Locust task sees as self.client, sending to Flask's test client."""

    def __init__(self, flask_client: Any) -> None:
        self.flask = flask_client
        self.sent: list[tuple[str, str, int]] = []

    def request(self, method: str, path: str, name: str | None = None, **kw: Any) -> Any:
        resp = self.flask.open(path, method=method, json=kw.get("json"), data=kw.get("data"))
        self.sent.append((method, path, resp.status_code))
        return resp

    def __getattr__(self, verb: str) -> Callable[..., Any]:
        if verb not in ("get", "post", "put", "patch", "delete"):
            raise AttributeError(verb)
        return lambda path, **kw: self.request(verb.upper(), path, **kw)


def stand_in_locust() -> types.ModuleType:
    """The parts of `locust` a Locust file uses at import time."""
    mod = types.ModuleType("locust")

    class User:
        pass

    def task(arg: Any = 1) -> Any:
        if callable(arg):
            arg.locust_task = 1
            return arg
        return lambda fn: (setattr(fn, "locust_task", arg), fn)[1]

    mod.User = mod.HttpUser = mod.FastHttpUser = User  # type: ignore[attr-defined]
    mod.task = task  # type: ignore[attr-defined]
    mod.between = mod.constant = lambda *a: None  # type: ignore[attr-defined]
    return mod


def load_module(path: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Import a file under a unique name (examples share no namespace with the tests)."""
    name = f"example_{path.parent.name.replace('-', '_')}_{path.stem}_{secrets.token_hex(3)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


LOADED: list[Any] = []  # apps of the running test, whose pools close after it


def load_app(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The example's WSGI app as gunicorn would load it (its one candidate)."""
    module, _, attr = target.candidates(EXAMPLES / name)[0].partition(":")
    loaded = load_module(EXAMPLES / name / f"{module.replace('.', '/')}.py", monkeypatch)
    obj = getattr(loaded, attr.removesuffix("()"))
    app = obj() if attr.endswith("()") else obj
    LOADED.append(app)
    return app


@pytest.fixture(autouse=True)
def close_pools() -> Iterator[None]:
    yield
    while LOADED:
        pool = (LOADED.pop().extensions.get("shop") or {}).get("pool")
        if pool is not None:
            pool.close()


def run_tasks(path: Path, flask_client: Any, monkeypatch: pytest.MonkeyPatch) -> list:
    """Every task of the file's User classes, a few times each (on_start first)."""
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "locust", stand_in_locust())
        module = load_module(path, m)
    client = Client(flask_client)
    users = [
        v for v in vars(module).values()
        if isinstance(v, type) and v.__module__ == module.__name__ and v.__name__ != "User"
    ]  # fmt: skip
    assert users
    for cls in users:
        user = cls.__new__(cls)
        user.client = client
        if hasattr(user, "on_start"):
            user.on_start()
        tasks = [f for f in vars(cls).values() if hasattr(f, "locust_task")]
        assert tasks, f"{cls.__name__} has no task"
        for fn in tasks:
            for _ in range(5):
                fn(user)
    return client.sent


@pytest.fixture
def example_env(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], None]:
    """Points the conventional variable at a real, empty store, as hscale does."""

    def setup(name: str) -> None:
        if STORE[name] == "redis":
            server = request.getfixturevalue("redis_server")
            import redis

            redis.Redis.from_url(server.url).flushdb()
            monkeypatch.setenv("REDIS_URL", server.url)
        else:
            server = request.getfixturevalue("postgres_server")
            dsn = server.create_database(f"example_{secrets.token_hex(4)}")
            monkeypatch.setenv("DATABASE_URL", dsn)
            monkeypatch.setenv("PAYMENT_MS", "0")

    return setup


@pytest.mark.parametrize("path", LOCUSTFILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_app_answers_its_locustfile(
    path: Path, example_env: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
):
    name = path.parent.name
    example_env(name)
    app = load_app(name, monkeypatch)
    assert app.test_client().get("/").status_code == 200  # hscale's readiness path
    sent = run_tasks(path, app.test_client(), monkeypatch)
    assert sent and all(200 <= status < 300 for _, _, status in sent), sent


# --- what each example is for -------------------------------------------------------------


@pytest.fixture
def pageviews(example_env: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    example_env("stateless-redis")
    yield load_app("stateless-redis", monkeypatch)


def test_page_views_are_shared_by_every_process(pageviews: Any, monkeypatch: pytest.MonkeyPatch):
    other = load_app("stateless-redis", monkeypatch)  # a second replica: its own client
    a, b = pageviews.test_client(), other.test_client()
    views = [c.get("/pages/docs").get_json()["views"] for c in (a, b) * 10]
    assert views == list(range(1, 21))
    assert a.get("/pages/nope").status_code == 404
    ranked = b.get("/api/trending").get_json()["trending"]
    assert ranked[0]["page"] == "docs" and len(ranked) == 8


def test_redis_down_is_a_fast_503(monkeypatch: pytest.MonkeyPatch, unused_port: int):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{unused_port}/0")
    app = load_app("stateless-redis", monkeypatch)
    start = time.monotonic()
    resp = app.test_client().get("/pages/home")
    assert resp.status_code == 503 and resp.get_json() == {"error": "store unavailable"}
    assert time.monotonic() - start < 2


@pytest.fixture
def shop(example_env: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    example_env("hot-row")
    yield load_app("hot-row", monkeypatch)


def checkouts(apps: list[Any], path: str, each: int) -> float:
    """`each` checkouts from every app at once (a thread per app); the wall time."""
    statuses: list[int] = []

    def buy(app: Any) -> None:
        client = app.test_client()
        statuses.extend(
            client.post(path, json={"product": 1, "qty": 1}).status_code for _ in range(each)
        )

    threads = [threading.Thread(target=buy, args=(app,)) for app in apps]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * (len(apps) * each)
    return time.monotonic() - start


def test_checkout_holds_the_row_lock_through_the_payment(
    shop: Any, monkeypatch: pytest.MonkeyPatch
):
    """Four replicas, one payment of 60 ms each: /checkout takes the four payments one
    after another, /checkout-fixed pays in parallel; no order is lost either way."""
    monkeypatch.setenv("PAYMENT_MS", "60")
    apps = [load_app("hot-row", monkeypatch) for _ in range(4)]  # four replicas' pools
    for app in apps:
        app.test_client().get("/")  # open each pool and create the schema once
    serial = checkouts(apps, "/checkout", 1)
    parallel = checkouts(apps, "/checkout-fixed", 1)
    assert serial >= 4 * 0.060
    assert parallel < 3 * 0.060, (serial, parallel)
    product = apps[0].test_client().get("/products/1").get_json()
    assert product["sold"] == 8 and product["stock"] == 10**12 - 8
    with psycopg.connect(shop.config["DATABASE_URL"]) as conn:
        paid = conn.execute("SELECT count(*), sum(qty) FROM orders WHERE status = 'paid'")
        assert paid.fetchone() == (8, 8)


def test_checkout_errors(shop: Any):
    client = shop.test_client()
    assert client.get("/products/99").status_code == 404
    with psycopg.connect(shop.config["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("UPDATE products SET stock = 1 WHERE id = 3")
    for path in ("/checkout", "/checkout-fixed"):
        assert client.post(path, json={"product": 99}).status_code == 404
        assert client.post(path, json={"qty": 0}).status_code == 400
        assert client.post(path, json={"product": "1"}).status_code == 400
    assert client.post("/checkout", json={"product": 3}).status_code == 201
    for path in ("/checkout", "/checkout-fixed"):
        resp = client.post(path, json={"product": 3})
        assert resp.status_code == 409 and "sold out" in resp.get_json()["error"]
    assert client.get("/products/3").get_json()["stock"] == 0


def test_postgres_down_is_a_503(monkeypatch: pytest.MonkeyPatch, unused_port: int):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://x:y@127.0.0.1:{unused_port}/shop")
    monkeypatch.setenv("POOL_TIMEOUT", "0.5")
    app = load_app("hot-row", monkeypatch)
    start = time.monotonic()
    resp = app.test_client().post("/checkout", json={"product": 1})
    assert resp.status_code == 503 and resp.get_json() == {"error": "store unavailable"}
    assert time.monotonic() - start < 3
