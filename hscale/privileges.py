"""Who the local runtime's servers run as: not root, where the host allows it.

Run as root, hscale starts the replicas and Redis as `nobody` (memcached and PostgreSQL
drop to their own users themselves; nginx's workers are set with its `user` directive).
A server can only run as nobody if nobody can read what it runs: the interpreter, the
app's code, the configuration. Where a directory on the way is closed to other users (a
Python under /root, a checkout in a 0700 temporary directory), the server stays root
and the manifest says why, instead of failing the run or opening the user's files."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from pathlib import Path

from hscale.procs import dies_with_us

USER = "nobody"


def blocked(path: str | Path, listed: bool = True) -> str | None:
    """The first path on the way to `path` (symlinks followed) that other users cannot
    pass, or None. Directories on the way need search (x); `path` itself read (r), and
    search too if it is a directory, unless `listed` is False (a 0711 directory whose
    entries the server knows by name; Python's imports list theirs)."""
    target = Path(path).resolve()
    for directory in reversed(target.parents):
        if not os.stat(directory).st_mode & stat.S_IXOTH:
            return str(directory)
    mode = os.stat(target).st_mode
    need = (stat.S_IXOTH | (stat.S_IROTH if listed else 0)) if target.is_dir() else stat.S_IROTH
    return None if mode & need == need else str(target)


def as_unprivileged(
    argv: list[str], reads: list[str | Path], passes: tuple[str | Path, ...] = ()
) -> tuple[list[str], str]:
    """(argv that runs as nobody where possible, who it runs as and why). `reads`: what it
    reads (directories listed); `passes`: directories it only goes through."""
    if os.geteuid() != 0:
        return argv, pwd.getpwuid(os.geteuid()).pw_name
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        return argv, f"root (this host has no user {USER})"
    setpriv = shutil.which("setpriv")  # util-linux: drops uid, gid and groups, then execs
    if setpriv is None:
        return argv, "root (no setpriv on PATH to drop to nobody)"
    for path, listed in [*((p, True) for p in reads), *((p, False) for p in passes)]:
        closed = blocked(path, listed)
        if closed:
            return argv, f"root ({closed} is closed to other users, so {USER} could not run it)"
    ids = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    # A change of user clears the parent-death signal: set it again after it.
    again = dies_with_us()[1:-1]
    return [setpriv, *ids, *again, "--", *argv], USER


def give(path: Path) -> None:
    """A file or directory of the run's, handed to nobody (its mode kept: 0600 stays 0600)."""
    if os.geteuid() == 0:
        user = pwd.getpwnam(USER)
        os.chown(path, user.pw_uid, user.pw_gid)
