"""One run at a time per port and per results directory, and a record of every live run
so `hscale cleanup` can tell a killed run's leftovers from a running one's.

Locks are flock(2)s on files under the run registry (/tmp/hscale-runs, or
$HSCALE_RUNS): the kernel drops them when the holder exits however it exits, SIGKILL
included, so a lock never outlives its run. The registry entry <run_id>.json names the
holder's pid and what it may leave behind (its compose project, its temporary files).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hscale.errors import UsageError


def registry() -> Path:
    path = Path(os.environ.get("HSCALE_RUNS") or "/tmp/hscale-runs")
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    return path


@dataclass
class RunLock:
    """The locks of one run, held until release() or the process's end."""

    run_id: str
    held: list[IO[str]] = field(default_factory=list)
    entry: Path | None = None

    def take(self, name: str, what: str) -> None:
        """Lock `name` (a port, a directory) for this run, or a one-line UsageError naming
        the run that holds it."""
        path = registry() / f"lock-{name}"
        fh = open(path, "a+")  # noqa: SIM115  (held open: the open file is the lock)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another hscale run"
            fh.close()
            raise UsageError(f"{what} is in use by {holder}; wait for it, or change it") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"run {self.run_id} (pid {os.getpid()})")
        fh.flush()
        self.held.append(fh)

    def register(self, **leaves: Any) -> None:
        """Record the live run: its pid and what it may leave behind."""
        self.entry = registry() / f"{self.run_id}.json"
        self.entry.write_text(json.dumps({"run_id": self.run_id, "pid": os.getpid(), **leaves}))

    def release(self) -> None:
        for fh in self.held:
            with contextlib.suppress(OSError):
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
        self.held.clear()
        if self.entry is not None:
            self.entry.unlink(missing_ok=True)


def lock_run(run_id: str, ports: dict[str, int], results: str) -> RunLock:
    """Every port the run listens on and its results directory, locked at once."""
    lock = RunLock(run_id)
    try:
        for what, port in ports.items():
            lock.take(f"port-{port}", f"port {port} ({what})")
        digest = hashlib.sha256(os.path.realpath(results).encode()).hexdigest()[:16]
        lock.take(f"results-{digest}", f"RESULTS={results}")
    except BaseException:
        lock.release()
        raise
    return lock


def live_runs() -> dict[str, dict[str, Any]]:
    """Registry entries whose process still runs (by run id)."""
    out = {}
    for path in registry().glob("*.json"):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _alive(int(entry.get("pid", 0))):
            out[entry["run_id"]] = entry
    return out


def dead_entries() -> list[dict[str, Any]]:
    """Registry entries of runs whose harness is gone (killed, crashed)."""
    out = []
    for path in registry().glob("*.json"):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not _alive(int(entry.get("pid", 0))):
            out.append({**entry, "entry": str(path)})
    return out


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
