"""`pip install .` gives an hscale that runs outside the checkout.

The wheel is built from this checkout and installed (without dependencies: this venv has
them) into a directory of its own; hscale then runs from another directory with only that
directory on its path, so nothing can come from the checkout: the app, the load tests,
nginx's template and the compose file must all be the wheel's package data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hscale_testkit import TEST_KNOBS, Ports, clean_up_run, hscale_env, run_dirs

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels, site = tmp_path_factory.mktemp("wheels"), tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # setuptools builds in the checkout's build/, which keeps files of earlier builds
    # (a module since moved would ship again): start from none, leave none.
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    try:
        subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)],
                       check=True, capture_output=True, timeout=300)  # fmt: skip
    finally:
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    (wheel,) = wheels.glob("hscale-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    return site


def installed(site: Path, cwd: Path, *args: str, timeout: float = 300):
    env = {**hscale_env(cwd / "tmp"), "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hscale.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_the_wheel_carries_every_project_file(site: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "app", "loadtests", "nginx", "stores", "cluster", "docker-compose.yml"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    needed = {f for f in tracked if not f.endswith("README.md")}
    project = site / "hscale" / "project"
    missing = sorted(f for f in needed if not (project / f).is_file())
    assert not missing, missing
    assert (site / "hscale" / "analysis" / "templates" / "report.html.j2").is_file()
    assert not (site / "analysis").exists()  # no top-level package to clash with


def test_installed_hscale_benches_from_another_directory(site: Path, tmp_path: Path) -> None:
    where = installed(site, tmp_path, "knobs")
    assert where.returncode == 0, where.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import hscale, hscale.paths as p; print(hscale.__file__, p.ROOT)"],
        cwd=tmp_path, env={"PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert str(site) in probe and str(ROOT) + "/hscale" not in probe
    args = ["bench", "--runtime", "local", "--sweep", "1", "--scenario", "json"]
    args += ["--trials", "1", "--duration", "2", "--warmup", "1", *Ports(1).args()]
    args += [x for item in TEST_KNOBS.items() for x in item]
    done = installed(site, tmp_path, *args)
    (run,) = run_dirs(tmp_path / "results")  # results land where hscale ran
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["trials"][0]["requests"] > 0
        assert (run / "report.html").is_file()
    finally:
        clean_up_run(run.name)
