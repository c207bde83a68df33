"""A virtual environment for your app (APP=path) on this host: its requirements plus the
gunicorn that hscale pins, built once per requirements file and reused (the local runtime
runs the replicas from it, `hscale init` imports the app with it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hscale import paths
from hscale.errors import UsageError
from hscale.target import Target

INSTALL_TIMEOUT_S = 900


def cache_dir() -> Path:
    """$HSCALE_CACHE, else $XDG_CACHE_HOME/hscale, else ~/.cache/hscale."""
    if os.environ.get("HSCALE_CACHE"):
        return Path(os.environ["HSCALE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hscale"


def gunicorn_pin() -> str:
    """The reference app's gunicorn line: every target runs the same server."""
    for line in (paths.APP_DIR / "requirements.txt").read_text().splitlines():
        if line.strip().lower().startswith("gunicorn"):
            return line.strip()
    raise RuntimeError("app/requirements.txt pins no gunicorn")


def ensure_venv(target: Target, log: Path | None = None) -> Path:
    """The project's venv (its python), built if missing. Raises UsageError with pip's
    last lines when the requirements do not install."""
    venv = cache_dir() / "venvs" / f"{target.name}-{target.fingerprint()}"
    python = venv / "bin" / "python"
    if (venv / ".complete").is_file() and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = log or venv.parent / f"{venv.name}.log"
    req = target.requirements()
    what = ["-r", str(req)] if req.name == "requirements.txt" else [str(req.parent)]
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
         *what, gunicorn_pin()],
    ]  # fmt: skip
    with open(log, "ab") as out:
        for argv in steps:
            done = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=req.parent, timeout=INSTALL_TIMEOUT_S,
            )  # fmt: skip
            if done.returncode != 0:
                tail = " | ".join(log.read_text(errors="replace").splitlines()[-3:])
                shutil.rmtree(venv, ignore_errors=True)
                raise UsageError(f"installing {req} failed (log {log}): {tail}")
    (venv / ".complete").write_text(f"{req}\n")
    return python
