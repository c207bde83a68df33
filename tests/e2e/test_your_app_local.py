"""Your own app on the local runtime: a project directory (APP) with its requirements and
its own Locust file, run unchanged, as N gunicorn replicas from its own venv, with the
store handed over by REDIS_URL and a one-shot APP_INIT; the split proved by nginx's
X-Upstream; broken apps stop the sweep with the reason and leave nothing running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hscale_testkit import Ports, clean_up_run, run_dirs, run_hscale, wait_no_marked_processes

pytestmark = pytest.mark.e2e

APP = """\
import os

import redis
from flask import Flask, jsonify

app = Flask(__name__)
db = redis.Redis.from_url(os.environ["REDIS_URL"])


@app.get("/")
def index():
    return "ok"


@app.get("/visit")
def visit():
    return jsonify(visits=db.incr("visits"), seeded=db.get("seeded").decode())
"""
# A think time the sweep must override (closed loop: no waiting), and no hscale import.
LOCUSTFILE = """\
from locust import FastHttpUser, between, task


class Visitor(FastHttpUser):
    wait_time = between(5, 10)

    @task
    def visit(self):
        self.client.get("/visit")
"""
# Run from the project's venv (redis is its requirement, not hscale's), in its directory.
INIT = 'python -c \'import shop; shop.db.set("seeded", "yes")\''


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv per requirements file for the whole module (built from PyPI once)."""
    return tmp_path_factory.mktemp("hscale-cache")


def make_project(root: Path, app: str = APP, locustfile: str = LOCUSTFILE) -> Path:
    root.mkdir(parents=True)
    (root / "shop.py").write_text(app)
    (root / "locustfile.py").write_text(locustfile)
    (root / "requirements.txt").write_text("flask==3.1.3\nredis==8.1.0\n")
    return root


def bench(tmp_path: Path, cache: Path, project: Path, *extra: str) -> tuple[object, Path]:
    results = tmp_path / "results"
    args = ["bench", "--app", str(project), "--sweep", "1 2", "--trials", "1"]
    args += ["--duration", "3", "--warmup", "1", "--warmup-trial", "0", "--ci-target", "0"]
    args += ["--results", str(results), *Ports(2).args(), *extra]
    done = run_hscale(args, tmpdir=tmp_path / "tmp", timeout=600, env={"HSCALE_CACHE": str(cache)})
    runs = run_dirs(results)
    return done, (runs[0] if runs else results)


def test_your_app_sweeps_with_its_store_init_and_own_locustfile(tmp_path: Path, cache: Path):
    project = make_project(tmp_path / "shop")
    done, run = bench(tmp_path, cache, project, "--store", "redis", "--app-init", INIT)
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "complete"
        assert summary["target"]["kind"] == "project" and summary["target"]["wsgi"] == "shop:app"
        assert summary["scenario"] == "locustfile.py" and summary["consistency"] is None
        by_n = {t["replicas"]: t for t in summary["trials"]}
        # The split, from nginx's X-Upstream: both replicas, each near half.
        split = by_n[2]["per_replica_requests"]
        assert set(split) == {"replica-1", "replica-2"}, split
        assert min(split.values()) > 0.3 * sum(split.values())
        # Closed loop overrides the file's 5-10 s think time: hundreds of requests, not ~1.
        assert by_n[1]["requests"] > 100 and by_n[1]["failures"] == 0
        assert all(t["valid"] for t in summary["trials"]), [t["notes"] for t in summary["trials"]]
        # APP_INIT ran before the replicas with the store's variables: /visit reads the key
        # it set (a missing one would be a 500, and the smoke run would have stopped).
        assert (run / "runtime" / "logs" / "app-init.log").exists()
        report = (run / "report.html").read_text()
        assert (
            "reference app&#39;s own endpoints" in report
            or "reference app's own endpoints" in report
        )
        assert wait_no_marked_processes(run.name, grace=1.0) == []
    finally:
        clean_up_run(run.name)


@pytest.mark.parametrize(
    ("app", "extra", "message"),
    [
        (APP.replace("import redis", "import redis, nonexistent_mod"), (),
         "No module named 'nonexistent_mod'"),
        (APP.replace('return jsonify(visits', 'raise RuntimeError("boom")\n    return jsonify(v'),
         (), "routes failing before any load: GET /visit"),
        (APP, ("--health-path", "/never", "--ready-timeout", "3"), "not ready at"),
    ],
    ids=["import-error", "server-error", "never-ready"],
)  # fmt: skip
def test_a_broken_app_stops_the_sweep_with_the_reason(
    tmp_path: Path, cache: Path, app: str, extra: tuple[str, ...], message: str
) -> None:
    project = make_project(tmp_path / "shop", app=app)
    done, run = bench(tmp_path, cache, project, "--store", "redis", *extra)
    try:
        assert done.returncode == 1, done.stderr[-3000:]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "failed" and message in summary["error"], summary["error"]
        assert message in done.stdout + done.stderr
        assert summary["trials"] == []
        assert wait_no_marked_processes(run.name, grace=1.0) == []
    finally:
        clean_up_run(run.name)


def test_usage_errors_come_before_anything_starts(tmp_path: Path, cache: Path) -> None:
    project = make_project(tmp_path / "shop")
    (project / "other.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    done, results = bench(tmp_path, cache, project)
    assert done.returncode == 2
    assert "2 WSGI apps" in done.stderr and "APP_MODULE" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert run_dirs(results) == []


def test_a_pyproject_package_loaded_by_locust_workers(tmp_path: Path, cache: Path):
    """No requirements.txt: `pip install <project>` into its venv (its dependencies from
    pyproject.toml), then the same sweep, its Locust file distributed (a master and 2
    workers): the workers run the users, and they too drop the file's think time."""
    project = make_project(tmp_path / "shop")
    (project / "requirements.txt").unlink()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "shop"\nversion = "0.1"\n'
        'dependencies = ["flask==3.1.3", "redis==8.1.0"]\n'
        '[tool.setuptools]\npy-modules = ["shop"]\n'
    )
    done, run = bench(
        tmp_path, cache, project, "--store", "redis", "--app-init", INIT, "--loadgen-workers", "2"
    )
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "complete" and all(
            t["failures"] == 0 for t in summary["trials"]
        )
        one = next(t for t in summary["trials"] if t["replicas"] == 1)
        assert one["loadgen_workers"] == 2 and one["requests"] > 100
    finally:
        clean_up_run(run.name)
