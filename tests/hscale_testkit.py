"""Helpers shared by tests/harness and tests/e2e: run the real `hscale` console script,
pick ports, and find what a run may have left behind (processes, cgroups, temp dirs).

Importable as `hscale_testkit` because pytest puts tests/ on sys.path for tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from hscale.cleanup import project_of

ROOT = Path(__file__).resolve().parents[1]
RUN_MARKER = "HSCALE_RUN_ID"  # what hscale.procs puts in every child's environment
CGROUP_ROOT = Path("/sys/fs/cgroup")

# Ports are picked below the kernel's ephemeral range: a replica port that is only bound
# when N grows must not be taken meanwhile as the local port of an outgoing connection
# (Locust and nginx open many), and hscale's defaults (8080, 8101.., 6390) are avoided.
_PORT_LO, _PORT_HI = 20_000, 32_000
_handed_out: set[int] = set()


# The sweep's defaults aim at a decisive verdict in minutes: trials are added until every
# CI is within 5%, after a discarded warm-up trial. A behaviour test runs exactly the
# trials it asks for, so these apply unless the test names the knob itself.
TEST_KNOBS = {"--ci-target": "0", "--warmup-trial": "0"}


def with_test_knobs(args: list[str]) -> list[str]:
    """bench and compare-stores arguments with TEST_KNOBS added where not given."""
    if not args or args[0] not in ("bench", "compare-stores"):
        return args
    extra = [x for flag, value in TEST_KNOBS.items() if flag not in args for x in (flag, value)]
    return [*args, *extra]


def hscale_cmd() -> list[str]:
    """The installed console script of this venv (falls back to `python -m hscale.cli`)."""
    script = Path(sys.executable).parent / "hscale"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hscale.cli"]


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(count: int = 1) -> int:
    """First of `count` consecutive free loopback ports, never handed out twice per session."""
    rng = random.Random()
    for _ in range(1000):
        base = rng.randrange(_PORT_LO, _PORT_HI - count)
        block = range(base, base + count)
        if any(p in _handed_out for p in block):
            continue
        if all(_bindable(p) for p in block):
            _handed_out.update(block)
            return base
    raise RuntimeError(f"no block of {count} free ports in {_PORT_LO}..{_PORT_HI}")


class Ports:
    """PORT, APP_PORT (with room for `replicas` replicas) and STORE_PORT for one run."""

    def __init__(self, replicas: int) -> None:
        self.port = free_port_block()
        self.app_port = free_port_block(replicas)
        self.store_port = free_port_block()

    def args(self) -> list[str]:
        # These ports belong to the local runtime; name it, since auto picks docker
        # wherever an engine answers.
        return [
            "--runtime",
            "local",
            "--port",
            str(self.port),
            "--app-port",
            str(self.app_port),
            "--store-port",
            str(self.store_port),
        ]


def hscale_env(tmpdir: Path | None = None) -> dict[str, str]:
    """The environment for a child hscale: no inherited MAKEFLAGS, a private TMPDIR."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.pop(RUN_MARKER, None)
    if tmpdir is not None:
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    return env


def run_hscale(
    args: list[str],
    *,
    tmpdir: Path | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """hscale with the test knobs; `env` adds variables (the replicas inherit them)."""
    return subprocess.run(
        [*hscale_cmd(), *with_test_knobs(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**hscale_env(tmpdir), **(env or {})},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def usage_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """What every usage error looks like: exit 2, exactly one line on stderr, starting
    `hscale: error: `, nothing on stdout. Returns that line."""
    lines = done.stderr.splitlines()
    assert done.returncode == 2, f"exit {done.returncode}; stderr:\n{done.stderr}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{done.stderr}"
    assert lines[0].startswith("hscale: error: "), lines[0]
    assert done.stdout == "", done.stdout
    return lines[0]


def run_dirs(results: Path) -> list[Path]:
    """Run directories in a results dir (everything but the `latest` link and dotfiles)."""
    if not results.exists():
        return []
    return sorted(p for p in results.iterdir() if p.name != "latest" and not p.name.startswith("."))


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def marked_processes(run_id: str) -> list[psutil.Process]:
    """Every live process whose environment carries HSCALE_RUN_ID=<run_id>."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(RUN_MARKER) == run_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
    return out


def wait_no_marked_processes(run_id: str, grace: float = 3.0) -> list[str]:
    """Processes of the run still alive after `grace` s (time for SIGKILLed ones to die)."""
    deadline = time.monotonic() + grace
    while True:
        left = marked_processes(run_id)
        if not left or time.monotonic() > deadline:
            return describe(left)
        time.sleep(0.1)


def cgroup_dirs(run_id: str) -> list[Path]:
    """hscale-<run_id> groups under any controller (v1) or the unified root (v2)."""
    return sorted(CGROUP_ROOT.glob(f"*/hscale-{run_id}")) + sorted(
        CGROUP_ROOT.glob(f"hscale-{run_id}")
    )


def _remove_group_tree(top: Path) -> None:
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True) + [top]:
        procs = d / "cgroup.procs"
        with contextlib.suppress(OSError, ValueError):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        for _ in range(40):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


def clean_up_run(run_id: str) -> None:
    """After a test, whatever it asserted: kill the run's processes, remove its cgroups."""
    for proc in marked_processes(run_id):
        with contextlib.suppress(psutil.Error):
            proc.kill()
    for top in cgroup_dirs(run_id):
        _remove_group_tree(top)


def stop_process_group(popen: subprocess.Popen) -> None:
    """SIGKILL a process started with start_new_session=True, and its group."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=10)


COMPOSE_PROJECT_LABEL = "com.docker.compose.project"


def compose_project_resources(project: str, remove: bool = False) -> list[str]:
    """Containers, networks and volumes labelled as compose project `project` (by the
    Docker SDK, so it works without the compose environment); removed when asked."""
    import docker  # only the docker tests need it

    client = docker.from_env(timeout=30)
    label = {"label": f"{COMPOSE_PROJECT_LABEL}={project}"}
    found = []
    for kind, items in (
        ("container", client.containers.list(all=True, filters=label)),
        ("network", client.networks.list(filters=label)),
        ("volume", client.volumes.list(filters=label)),
    ):
        for item in items:
            found.append(f"{kind} {item.name}")
            if remove:
                with contextlib.suppress(docker.errors.NotFound):
                    item.remove(**({"force": True, "v": True} if kind == "container" else {}))
    return found


def compose_project_name(run_id: str) -> str:
    """The compose project hscale's docker runtime uses for a run."""
    return project_of(run_id)


def short_sweep(tmp_path: Path, *args: str, timeout: float = 600):
    """A short `json` sweep (one trial: 2 s warm-up, 4 s measured) into tmp_path/results; returns
    (the finished process, its one run directory, its summary)."""
    results = tmp_path / "results"
    done = run_hscale(
        [
            "bench",
            "--scenario",
            "json",
            "--duration",
            "4",
            "--warmup",
            "2",
            "--trials",
            "1",
            "--results",
            str(results),
            *args,
        ],
        tmpdir=tmp_path / "tmp",
        timeout=timeout,
    )
    (run,) = run_dirs(results)
    return done, run, json.loads((run / "summary.json").read_text())


def assert_merged_exactly(run: Path, trial: dict, workers: int) -> None:
    """LOADGEN_WORKERS: the workers' tallies merged exactly into the trial's figures."""
    from hscale.analysis.latency import decode

    tally = json.loads((run / trial["raw"] / "tally.json").read_text())
    locust = json.loads((run / trial["raw"] / "locust.json").read_text())
    assert trial["loadgen_workers"] == workers and tally["workers"] == workers
    assert trial["requests"] > 0 and trial["failures"] == 0
    # every response is in the summed replica counts and in the added histogram
    assert sum(trial["per_replica_requests"].values()) == trial["requests"]
    assert decode(tally["histogram"]).get_total_count() == trial["requests"]
    assert trial["latency_ms"]["max"] >= trial["latency_ms"]["p99"]
    # Locust's own stats may hold up to one worker report of warm-up, never less than ours
    locust_requests = sum(e["num_requests"] for e in locust)
    assert trial["requests"] <= locust_requests <= trial["requests"] * 1.6
    assert trial["components"]["loadgen"]["cpu_cores"] > 0
    assert trial["components"]["loadgen"]["budget_cpus"] == float(workers)


class CliRun:
    """A finished run of the CLI: its directory, summary, manifest and output."""

    def __init__(self, path: Path, done: subprocess.CompletedProcess[str]) -> None:
        self.path, self.done = path, done
        self.summary = json.loads((path / "summary.json").read_text())
        self.manifest = json.loads((path / "manifest.json").read_text())

    @property
    def run_id(self) -> str:
        return self.path.name

    def why(self) -> str:
        d = self.done
        return f"exit {d.returncode}\nstdout:\n{d.stdout[-3000:]}\nstderr:\n{d.stderr[-3000:]}"


def _engine_answers() -> bool:
    from hscale.runtimes.docker import engine_answers

    return engine_answers()


# Whole-stack tests on a Docker engine: skipped, with the reason, where none answers.
NEEDS_DOCKER = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not _engine_answers(), reason="no Docker engine answers here (docker runtime tests)"
    ),
]
