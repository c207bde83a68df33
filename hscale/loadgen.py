"""One Locust run per point: warm-up then measurement in the same process (the
listener resets Locust's stats at the boundary), headless, raw CSV/JSON kept."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hscale import paths
from hscale.cgroups import CpuCounters
from hscale.procs import ManagedProcess, child_env, tree_cpu_seconds


class LoadError(RuntimeError):
    pass


@dataclass
class LoadRun:
    tally: dict
    exit_code: int
    counters_start: dict[str, CpuCounters] = field(default_factory=dict)
    counters_end: dict[str, CpuCounters] = field(default_factory=dict)


def locust_argv(
    scenario: str, host: str, users: int, seconds: float, out: Path, workers: int = 0
) -> list[str]:
    # --processes k forks k workers under a master; the listener merges their tallies.
    distributed = ["--processes", str(workers)] if workers else []
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(paths.locustfile(scenario)),
        "--headless",
        "--host",
        host,
        "--users",
        str(users),
        # All users at once: the warm-up, not a ramp, brings the system to steady state.
        "--spawn-rate",
        str(users * 10),
        "--run-time",
        f"{round(seconds)}s",
        "--stop-timeout",
        "0",
        "--csv",
        str(out / "locust"),
        "--csv-full-history",
        "--json-file",
        str(out / "locust"),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--logfile",
        str(out / "locust.log"),
        "--exit-code-on-error",
        "0",  # failures are judged from the data, not the exit code
        *distributed,
    ]


def run_point(
    scenario: str,
    host: str,
    users: int,
    warmup: float,
    duration: float,
    out: Path,
    run_id: str,
    counters: Callable[[], dict[str, CpuCounters]],
    tick: Callable[[str], None] = lambda phase: None,
    workers: int = 0,
) -> LoadRun:
    """Run Locust; read the stack's CPU counters when measurement starts and ends."""
    out.mkdir(parents=True, exist_ok=True)
    tally_file, phase_file = out / "tally.json", out / "phase.json"
    env = child_env(
        run_id,
        {
            "HSCALE_WARMUP": str(warmup),
            "HSCALE_TALLY_FILE": str(tally_file),
            "HSCALE_PHASE_FILE": str(phase_file),
        },
    )
    proc = ManagedProcess(
        "locust",
        locust_argv(scenario, host, users, warmup + duration, out, workers),
        out / "locust.out",
        env,
        cwd=paths.LOADTESTS_DIR,
    )
    run = LoadRun(tally={}, exit_code=-1)
    deadline = time.monotonic() + warmup + duration + 60
    phase = "warmup"
    try:
        while proc.alive():
            if time.monotonic() > deadline:
                raise LoadError(f"Locust did not finish in time; see {out / 'locust.log'}")
            new = _phase(phase_file)
            if new == "measure" and phase == "warmup":
                run.counters_start = {**counters(), "loadgen": _cpu(proc)}
            elif new == "done" and phase == "measure":
                run.counters_end = {**counters(), "loadgen": _cpu(proc)}
            phase = new or phase
            tick(phase)
            time.sleep(0.05)
    finally:
        proc.stop()
    run.exit_code = proc.popen.returncode
    if not tally_file.exists():
        raise LoadError(
            f"Locust exited with code {run.exit_code} without results; "
            f"see {out / 'locust.out'} and {out / 'locust.log'}:\n{proc.log_tail()}"
        )
    run.tally = json.loads(tally_file.read_text())
    if run.tally.get("phase") != "measure":
        raise LoadError("Locust stopped before the warm-up ended; nothing was measured")
    return run


def _phase(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["phase"]
    except (OSError, ValueError, KeyError):
        return None


def _cpu(proc: ManagedProcess) -> CpuCounters:
    return CpuCounters(cpu_s=tree_cpu_seconds(proc))
