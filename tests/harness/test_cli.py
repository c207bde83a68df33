"""The real `hscale` console script on bad input: exit 2, one line, nothing created.

Every call gets a private results dir and TMPDIR, and ports away from the defaults, so a
sweep a user is running on this machine is neither disturbed nor mistaken for ours.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
from pathlib import Path

import pytest
from hscale_testkit import (
    ROOT,
    Ports,
    hscale_cmd,
    hscale_env,
    run_dirs,
    run_hscale,
    usage_error_line,
)

from hscale import cli, settings

TMP_PREFIX = "hscale-"  # what hscale's local runtime names its temporary directory


@pytest.fixture
def where(tmp_path: Path) -> dict[str, Path]:
    return {"results": tmp_path / "results", "tmpdir": tmp_path / "tmp"}


def bench(where: dict[str, Path], *extra: str, replicas: int = 4) -> list[str]:
    """`bench` args: private results dir and ports, then `extra` (later flags win)."""
    return ["bench", "--results", str(where["results"]), *Ports(replicas).args(), *extra]


def assert_usage_error(done: subprocess.CompletedProcess[str], where: dict[str, Path]) -> str:
    """A usage error (usage_error_line) that left no run directory. The line."""
    line = usage_error_line(done)
    assert run_dirs(where["results"]) == [], "a run directory was created"
    assert not (where["results"] / "latest").exists()
    return line


BAD_BENCH = {
    "replicas-0": (["--set", "REPLICAS=0"], "REPLICAS"),
    "replicas-negative": (["--set", "REPLICAS=-1"], "REPLICAS"),
    "replicas-abc": (["--set", "REPLICAS=abc"], "REPLICAS"),
    "replicas-fraction": (["--set", "REPLICAS=1.5"], "REPLICAS"),
    "replicas-flag": (["--replicas", "0"], "REPLICAS"),
    "sweep-repeat": (["--sweep", "1 2 2"], "repeat"),
    "sweep-garbage": (["--sweep", "1 two"], "SWEEP"),
    "sweep-zero": (["--set", "SWEEP=0 1"], "SWEEP"),
    "sweep-empty-list": (["--sweep", ","], "SWEEP"),
    "scenario": (["--scenario", "nope"], "scenario"),
    "runtime": (["--runtime", "kubernetes"], "runtime"),
    "duration-zero": (["--duration", "0"], "DURATION"),
    "duration-garbage": (["--set", "DURATION=soon"], "DURATION"),
    "duration-unit": (["--duration", "5h"], "DURATION"),
    "warmup-negative": (["--warmup=-1"], "WARMUP"),
    "replica-cpus-zero": (["--replica-cpus", "0"], "REPLICA_CPUS"),
    "replica-cpus-garbage": (["--replica-cpus", "half"], "REPLICA_CPUS"),
    "replica-cpus-nan": (["--set", "REPLICA_CPUS=nan"], "REPLICA_CPUS"),
    "replica-cpus-over-host": (["--replica-cpus", "100000"], "REPLICA_CPUS"),
    "users-zero": (["--users", "0"], "USERS"),
    "worker-class": (["--worker-class", "gevent"], "WORKER_CLASS"),
    "port-range": (["--port", "70000"], "PORT"),
    "misspelt-knob": (["--set", "REPLICA=3"], "REPLICA"),
    "lowercase-knob": (["--set", "replicas=3"], "replicas"),
    "set-without-value": (["--set", "REPLICAS"], "REPLICAS"),
    "unknown-flag": (["--replica", "3"], "--replica"),
    "flag-without-value": (["--sweep"], "--sweep"),
}


@pytest.mark.parametrize(("extra", "mentions"), BAD_BENCH.values(), ids=BAD_BENCH.keys())
def test_bad_bench_input(where, extra, mentions):
    line = assert_usage_error(run_hscale(bench(where, *extra), tmpdir=where["tmpdir"]), where)
    assert mentions in line


def test_port_clash_between_knobs(where):
    ports = Ports(4)
    same = str(ports.port)
    args = ["bench", "--results", str(where["results"]), *ports.args(), "--store-port", same]
    line = assert_usage_error(run_hscale(args, tmpdir=where["tmpdir"]), where)
    assert same in line


def test_port_inside_replica_range(where):
    ports = Ports(4)
    inside = str(ports.app_port + 3)
    args = ["bench", "--results", str(where["results"]), *ports.args(), "--port", inside]
    line = assert_usage_error(run_hscale([*args, "--replicas", "4"], tmpdir=where["tmpdir"]), where)
    assert inside in line


def test_flag_overrides_set(where):
    """--set is what make passes; an explicit flag after it wins, and is validated."""
    args = bench(where, "--set", "REPLICAS=2", "--replicas", "0")
    assert "REPLICAS" in assert_usage_error(run_hscale(args, tmpdir=where["tmpdir"]), where)


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["show", "a", "b"]], ids=str)
def test_bad_command_line(where, argv):
    assert_usage_error(run_hscale(argv, tmpdir=where["tmpdir"]), where)


# -- a busy port: found before anything starts ---------------------------------------------


def listen_on(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


BUSY = {
    # which port is taken -> the knob the message must tell the user to change
    "nginx": (lambda p: p.port, "PORT"),
    "store": (lambda p: p.store_port, "STORE_PORT"),
    "replica-1": (lambda p: p.app_port, "APP_PORT"),
    "replica-2": (lambda p: p.app_port + 1, "APP_PORT"),  # only needed at N = 2
}


@pytest.mark.parametrize(("pick", "knob"), BUSY.values(), ids=BUSY.keys())
def test_busy_port(where, pick, knob):
    ports = Ports(2)
    busy = pick(ports)
    args = ["bench", "--results", str(where["results"]), *ports.args(), "--sweep", "1 2"]
    with listen_on(busy):
        done = run_hscale(args, tmpdir=where["tmpdir"])
    line = assert_usage_error(done, where)
    assert str(busy) in line and knob in line


def test_busy_port_leaves_no_temporary_directory(where):
    """A usage error comes 'before anything starts': not even a temp dir may be left."""
    ports = Ports(1)
    args = ["bench", "--results", str(where["results"]), *ports.args(), "--sweep", "1"]
    with listen_on(ports.port):
        assert_usage_error(run_hscale(args, tmpdir=where["tmpdir"]), where)
    left = sorted(p.name for p in where["tmpdir"].iterdir() if p.name.startswith(TMP_PREFIX))
    assert left == [], f"temporary directories left behind in TMPDIR: {left}"


# -- show / plot -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["show", "plot"])
def test_show_and_plot_need_a_summary(where, tmp_path, command):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    (empty / "manifest.json").write_text("{}")
    line = assert_usage_error(run_hscale([command, str(empty)], tmpdir=where["tmpdir"]), where)
    assert "summary.json" in line
    assert not (empty / "throughput.png").exists()


@pytest.mark.parametrize("command", ["show", "plot"])
def test_show_and_plot_of_missing_dir(where, tmp_path, command):
    missing = tmp_path / "no-such-run"
    assert_usage_error(run_hscale([command, str(missing)], tmpdir=where["tmpdir"]), where)
    assert not missing.exists()


def test_show_rejects_another_schema_version_in_one_line(where, tmp_path):
    """A summary from a future hscale is bad input to `show`: one line and exit 2, no
    traceback (load_summary's ValueError must reach the user as a usage error)."""
    run = tmp_path / "future-run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"schema_version": 9, "points": []}))
    line = assert_usage_error(run_hscale(["show", str(run)], tmpdir=where["tmpdir"]), where)
    assert "schema_version" in line


def test_knobs_lists_every_knob(where):
    done = run_hscale(["knobs"], tmpdir=where["tmpdir"])
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    assert listed == [k.name for k in settings.KNOBS]


# -- the Makefile passes its command-line variables as --set NAME=VALUE -------------------


def make_dry_run(*variables: str) -> list[str]:
    """argv of the `hscale bench` line that `make -n bench ...` would run."""
    done = subprocess.run(
        ["make", "-n", "bench", *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env=hscale_env(),
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "hscale bench" in line]
    assert len(lines) == 1, done.stdout
    return shlex.split(lines[0])


def test_make_bench_passes_knobs_as_set():
    argv = make_dry_run("REPLICAS=4", "SWEEP=1 2")
    assert argv == [".venv/bin/hscale", "bench", "--set", "REPLICAS=4", "--set", "SWEEP=1 2"]
    # and hscale reads them as meant: the quoting kept "1 2" one value
    s = settings.load(cli.knob_values(cli.parse_args(argv[1:])))
    assert s.sweep == (1, 2)


def test_make_variables_of_its_own_are_not_knobs():
    argv = make_dry_run("REPLICAS=2", "VENV=.venv", "PYTHON=python3", "RUN=x", "PYTEST_ARGS=-q")
    assert argv[2:] == ["--set", "REPLICAS=2"]


def test_make_bench_with_misspelt_knob_is_a_usage_error(where):
    """`make bench REPLICA=3` hands the misspelling on; hscale refuses it (exit 2)."""
    argv = make_dry_run("REPLICA=3", f"RESULTS={where['results']}")
    assert argv[2:] == ["--set", "REPLICA=3", "--set", f"RESULTS={where['results']}"]
    done = subprocess.run(
        [*hscale_cmd(), *argv[1:], *Ports(4).args()],
        capture_output=True,
        text=True,
        timeout=60,
        env=hscale_env(where["tmpdir"]),
        cwd=ROOT,
    )
    assert "REPLICA" in assert_usage_error(done, where)
