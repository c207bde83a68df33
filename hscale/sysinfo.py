"""Provenance for the manifest: what code, which versions, what hardware."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

from hscale import paths

PACKAGES = (
    "hscale",
    "locust",
    "flask",
    "werkzeug",
    "gunicorn",
    "redis",
    "hdrhistogram",
    "numpy",
    "scipy",
    "matplotlib",
    "psutil",
    "requests",
)


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=paths.ROOT)
        return (done.stdout or done.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def git() -> dict:
    sha = _run(["git", "rev-parse", "HEAD"])
    return {
        "sha": sha or None,
        "dirty": bool(_run(["git", "status", "--porcelain"])) if sha else None,
    }


def versions(binaries: dict[str, str] | None = None) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    for name, path in (binaries or {}).items():
        out[name] = _run([path, "-v"] if name == "nginx" else [path, "--version"]) or None
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host() -> dict:
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }
