"""One Locust run per point: warm-up then measurement in the same process (the
listener resets Locust's stats at the boundary), headless, raw CSV/JSON kept."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hscale import paths
from hscale.cgroups import CpuCounters, CpuGroup
from hscale.procs import ManagedProcess, child_env, tree_cpu_seconds
from hscale.settings import LOAD_MODELS


class LoadError(RuntimeError):
    pass


@dataclass
class LoadRun:
    tally: dict
    exit_code: int | None  # None while a lingering Locust writes its last CSV rows
    counters_start: dict[str, CpuCounters] = field(default_factory=dict)
    counters_end: dict[str, CpuCounters] = field(default_factory=dict)
    lingering: ManagedProcess | None = None

    def finish(self, timeout: float = 15.0) -> None:
        """Wait for a lingering Locust to write its files and exit (then stop it)."""
        proc, self.lingering = self.lingering, None
        if proc is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout)
        proc.stop()
        self.exit_code = proc.popen.returncode


@dataclass(frozen=True)
class LocustPlan:
    """One point's load: what Locust runs, where its files go, what it targets."""

    scenario: str
    host: str
    users: int
    seconds: float
    workers: int = 0
    # closed: users loop without waiting; rate: open loop, `rate` requests/s offered in
    # total whatever the response times (loadtests/hscale_listener.py paces the users).
    load: str = "closed"
    rate: float | None = None
    # Your own Locust file (LOCUSTFILE, APP/locustfile.py), run unchanged: hscale's hooks
    # (loadtests/hscale_listener.py) are loaded beside it as a second locustfile.
    own_file: str | None = None

    def __post_init__(self) -> None:
        if self.load not in LOAD_MODELS:
            raise ValueError(f"unknown load model {self.load!r}")
        if self.load == "rate" and not (self.rate and self.rate > 0):
            raise ValueError(f"load 'rate' needs a rate > 0, got {self.rate!r}")


def locust_options(plan: LocustPlan, locustfile: str, out: str) -> list[str]:
    """Locust's command-line options; paths as the Locust process sees them."""
    return [
        "-f",
        locustfile,
        "--headless",
        "--host",
        plan.host,
        "--users",
        str(plan.users),
        # All users at once: the warm-up, not a ramp, brings the system to steady state.
        "--spawn-rate",
        str(plan.users * 10),
        "--run-time",
        f"{round(plan.seconds)}s",
        "--stop-timeout",
        "0",
        "--csv",
        f"{out}/locust",
        "--csv-full-history",
        "--json-file",
        f"{out}/locust",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--logfile",
        f"{out}/locust.log",
        "--exit-code-on-error",
        "0",  # failures are judged from the data, not the exit code
    ]


def locustfiles(plan: LocustPlan, loadtests: str, own_file: str | None = None) -> str:
    """Locust's -f: the scenario's file, or the user's file with hscale's hooks beside it
    (paths as the Locust process sees them: `own_file` overrides plan.own_file)."""
    own = own_file or plan.own_file
    if own:
        return f"{own},{loadtests}/{LISTENER}"
    return f"{loadtests}/{paths.scenario_file(plan.scenario)}"


LISTENER = "hscale_listener.py"
# Tells the hooks that the Locust file is the user's: they set its users' wait_time.
OWN_FILE_ENV = "HSCALE_OWN_LOCUSTFILE"


def host_argv(plan: LocustPlan, out: Path) -> list[str]:
    """Locust on this host; with workers, --processes forks them under a master."""
    distributed = ["--processes", str(plan.workers)] if plan.workers else []
    options = locust_options(plan, locustfiles(plan, str(paths.LOADTESTS_DIR)), str(out))
    return [sys.executable, "-m", "locust", *options, *distributed]


# A runtime may run Locust elsewhere (containers): it then turns a plan, the point's
# directory and the HSCALE_* variables into the command that starts the master, and the
# environment that command needs.
Launcher = Callable[[LocustPlan, Path, dict[str, str]], tuple[list[str], dict[str, str]]]


def run_point(
    plan: LocustPlan,
    warmup: float,
    out: Path,
    run_id: str,
    counters: Callable[[], dict[str, CpuCounters]],
    tick: Callable[[str], None] = lambda phase: None,
    launcher: Launcher | None = None,
    group: CpuGroup | None = None,
    linger: bool = False,
) -> LoadRun:
    """Run Locust; read the stack's CPU counters when measurement starts and ends.

    Without a launcher Locust runs on this host, inside `group` (a CPU quota) when given,
    and its CPU is read from the group or its process tree; a runtime that launches it
    elsewhere reports "loadgen" in its own counters. With `linger`, return as soon as the
    window's tally is written and leave Locust to finish its CSV files (about 1.4 s, in
    which the caller can judge the trial and place the next): LoadRun.finish() waits.
    """
    out.mkdir(parents=True, exist_ok=True)
    tally_file, phase_file = out / "tally.json", out / "phase.json"
    hscale_env = {
        "HSCALE_WARMUP": str(warmup),
        "HSCALE_TALLY_FILE": str(tally_file),
        "HSCALE_PHASE_FILE": str(phase_file),
        # The load model travels as variables, the command line stays as in closed loop;
        # a Locust master forwards them to its workers (see hscale_listener.on_parser).
        "HSCALE_LOAD": plan.load,
        "HSCALE_USERS": str(plan.users),
        **({"HSCALE_RATE": str(plan.rate)} if plan.load == "rate" else {}),
        **({OWN_FILE_ENV: "1"} if plan.own_file else {}),
    }
    argv, env = launcher(plan, out, hscale_env) if launcher else (host_argv(plan, out), {})
    if group is not None and launcher is None:
        argv = group.wrap(argv)
    proc = ManagedProcess(
        "locust",
        argv,
        out / "locust.out",
        child_env(run_id, {**hscale_env, **env}),
        cwd=paths.LOADTESTS_DIR,
    )
    run = LoadRun(tally={}, exit_code=-1)
    deadline = time.monotonic() + plan.seconds + 90
    phase = "warmup"

    def own_cpu() -> CpuCounters:
        return group.counters() if group is not None else CpuCounters(tree_cpu_seconds(proc))

    try:
        while proc.alive():
            if time.monotonic() > deadline:
                raise LoadError(f"Locust did not finish in time; see {out / 'locust.log'}")
            new = _phase(phase_file)
            if new == "measure" and phase == "warmup":
                run.counters_start = {"loadgen": own_cpu(), **counters()}
            elif new == "done" and phase == "measure":
                run.counters_end = {"loadgen": own_cpu(), **counters()}
            phase = new or phase
            tick(phase)
            if linger and phase == "done" and tally_file.exists():
                run.lingering = proc
                break
            time.sleep(0.05)
    finally:
        if run.lingering is None:
            proc.stop()
    run.exit_code = proc.popen.returncode
    if not tally_file.exists():
        raise LoadError(
            f"Locust exited with code {run.exit_code} without results; "
            f"see {out / 'locust.out'} and {out / 'locust.log'}:\n{proc.log_tail()}"
        )
    run.tally = json.loads(tally_file.read_text())
    if run.tally.get("phase") != "measure":
        run.finish()
        raise LoadError("Locust stopped before the warm-up ended; nothing was measured")
    return run


def _phase(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["phase"]
    except (OSError, ValueError, KeyError):
        return None
