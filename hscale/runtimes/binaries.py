"""System binaries of the local runtime: where they are, how to get them, which version."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from hscale import stores
from hscale.errors import UsageError

SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
# Debian keeps PostgreSQL's server binaries out of PATH, one directory per major version.
POSTGRES_BINDIRS = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = {"nginx": "nginx", **stores.install_hints()}


def find_binary(name: str) -> str:
    """Path of a system binary, or a UsageError saying how to get it."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))
    if not found and name == "postgres":
        found = shutil.which(name, path=os.pathsep.join(_postgres_bindirs()))
    if not found:
        raise UsageError(
            f"{name} not found: install it with `apt-get install {INSTALL_HINT[name]}` "
            "(`make setup` does this when run as root)"
        )
    return found


def sibling(binary: str, name: str) -> str:
    """A binary installed beside another one (initdb and psql beside postgres)."""
    path = Path(os.path.realpath(binary)).with_name(name)
    if not os.access(path, os.X_OK):
        raise UsageError(f"{name} not found beside {binary}: reinstall `postgresql`")
    return str(path)


def version(argv: list[str]) -> str | None:
    """The first line a binary prints about its version."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else None


def _postgres_bindirs() -> list[str]:
    """Newest major version first."""
    dirs = [str(p) for p in Path("/").glob(POSTGRES_BINDIRS.lstrip("/"))]
    return sorted(dirs, key=lambda d: [int(n) for n in re.findall(r"\d+", d)], reverse=True)
