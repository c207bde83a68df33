"""What runs as the replicas: APP, APP_MODULE, IMAGE, LOCUSTFILE and STORE resolved
before anything starts, every problem a one-line usage error."""

from __future__ import annotations

from pathlib import Path

import pytest

from hscale import settings, target
from hscale.errors import UsageError

FLASK_APP = "from flask import Flask\n\napp = Flask(__name__)\n"
WEB = {"web.py": FLASK_APP}
WEB_LF = {**WEB, "locustfile.py": ""}


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"requirements.txt": "flask==3.1.3\n", **files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def resolve(**knobs: str) -> target.Target:
    return target.resolve(settings.load(knobs, host_cpus=2))


def test_the_reference_app_is_the_default() -> None:
    t = resolve()
    assert t.reference and t.wsgi == "refapp:create_app()" and t.health_path == "/readyz"
    assert t.locustfile.name == "scenario_mixed.py"
    assert settings.load({}, host_cpus=2).store == "redis"


def test_a_project_with_one_app_is_guessed_and_defaults_to_no_store(tmp_path: Path) -> None:
    app = project(tmp_path, {"web.py": FLASK_APP, "locustfile.py": "", "helpers.py": "x = 1\n"})
    t = resolve(APP=str(app))
    assert (t.kind, t.wsgi, t.health_path, t.project) == ("project", "web:app", "/", app)
    assert t.locustfile == app / "locustfile.py"
    assert settings.load({"APP": str(app)}, host_cpus=2).store == "none"


def test_a_factory_in_a_package_is_found(tmp_path: Path) -> None:
    factory = "from flask import Flask\n\ndef create_app():\n    return Flask(__name__)\n"
    app = project(tmp_path, {"shop/__init__.py": factory, "locustfile.py": ""})
    assert resolve(APP=str(app)).wsgi == "shop:create_app()"


def test_two_candidates_need_app_module(tmp_path: Path) -> None:
    app = project(tmp_path, {"a.py": FLASK_APP, "b.py": FLASK_APP, "locustfile.py": ""})
    with pytest.raises(UsageError, match=r"2 WSGI apps .*a:app, b:app.*APP_MODULE"):
        resolve(APP=str(app))
    assert resolve(APP=str(app), APP_MODULE="b:app").wsgi == "b:app"


@pytest.mark.parametrize(
    ("files", "knobs", "message"),
    [
        ({}, {}, r"no WSGI app found in .*APP_MODULE"),
        (WEB, {}, r"has no locustfile.py: give LOCUSTFILE=.*hscale init"),
        (WEB_LF, {"STORE": "memory"}, r"STORE=memory is the reference app's"),
        (WEB_LF, {"APP_MODULE": "web:app()x"}, r"APP_MODULE=web:app\(\)x is not"),
        (WEB_LF, {"IMAGE": "x:1"}, r"APP and IMAGE name two apps"),
        (WEB, {"LOCUSTFILE": "/nope.py"}, r"LOCUSTFILE=/nope.py is not a .py file"),
    ],
)  # fmt: skip
def test_project_usage_errors(tmp_path: Path, files: dict, knobs: dict, message: str) -> None:
    app = project(tmp_path, files)
    with pytest.raises(UsageError, match=message):
        resolve(APP=str(app), **knobs)


def test_other_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"APP=/nope is not a directory"):
        resolve(APP="/nope")
    (tmp_path / "app.py").write_text(FLASK_APP)
    with pytest.raises(UsageError, match=r"has no requirements.txt or pyproject.toml"):
        resolve(APP=str(tmp_path))
    with pytest.raises(UsageError, match=r"STORE=none needs APP or IMAGE"):
        resolve(STORE="none")
    with pytest.raises(UsageError, match=r"APP_INIT applies to APP or IMAGE"):
        resolve(APP_INIT="true")
    with pytest.raises(UsageError, match=r"IMAGE needs RUNTIME=docker or swarm"):
        resolve(IMAGE="shop:1", RUNTIME="local", LOCUSTFILE=str(tmp_path / "app.py"))
    with pytest.raises(UsageError, match=r"IMAGE needs LOCUSTFILE"):
        resolve(IMAGE="shop:1", RUNTIME="docker")
    with pytest.raises(UsageError, match=r"HEALTH_PATH must be a URL path"):
        settings.load({"HEALTH_PATH": "healthz"}, host_cpus=2)


def test_an_image_target(tmp_path: Path) -> None:
    (tmp_path / "lf.py").write_text("")
    t = resolve(IMAGE="shop:1", RUNTIME="docker", LOCUSTFILE=str(tmp_path / "lf.py"),
                APP_CONTAINER_PORT="5000", HEALTH_PATH="/up", STORE="redis")  # fmt: skip
    assert (t.kind, t.image, t.port, t.health_path) == ("image", "shop:1", 5000, "/up")
    assert t.as_dict()["consistency_checked"] is False


def test_fingerprint_follows_the_requirements(tmp_path: Path) -> None:
    app = project(tmp_path, {"web.py": FLASK_APP, "locustfile.py": ""})
    before = resolve(APP=str(app)).fingerprint()
    (app / "requirements.txt").write_text("flask==3.1.3\nredis==7.1.0\n")
    assert resolve(APP=str(app)).fingerprint() != before


def test_served_by_reads_the_last_upstream_nginx_tried() -> None:
    from hscale.runtimes.base import served_by

    assert served_by("127.0.0.1:8101") == "127.0.0.1:8101"
    assert served_by("10.0.0.2:8000, 10.0.0.3:8000") == "10.0.0.3:8000"
    assert served_by("10.0.0.2:8000 : 10.0.0.4:8000") == "10.0.0.4:8000"
    assert served_by("") is None and served_by(None) is None


def test_by_replica_names_addresses_and_keeps_strangers() -> None:
    from hscale.trial import by_replica

    upstreams = {"127.0.0.1:8101": "replica-1", "127.0.0.1:8102": "replica-2"}
    got = by_replica({"127.0.0.1:8101": 5, "127.0.0.1:8102": 4, "10.9.9.9:80": 1}, upstreams)
    assert got == {"replica-1": 5, "replica-2": 4, "10.9.9.9:80": 1}
