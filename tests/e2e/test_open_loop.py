"""LOAD=rate: Locust offers a fixed arrival rate, whatever the response times, and times
each request from its intended send. Real Locust through hscale.loadgen.run_point, against
the reference app under real gunicorn (one replica, no nginx) on the session's Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from hscale_testkit import ROOT, free_port_block

from hscale import paths
from hscale.analysis.latency import decode, percentiles_ms
from hscale.loadgen import Launcher, LocustPlan, locust_options, run_point

pytestmark = pytest.mark.e2e

RATE = 200.0  # req/s: a fraction of what one gunicorn replica serves on /json
USERS = 20  # each paces at RATE / USERS = 10 req/s
WARMUP_S, MEASURE_S = 2.0, 6.0
STALL_AT_S, STALL_S = 2.0, 1.0  # into the measurement window
SLOW_MS = 100.0


@pytest.fixture
def server(redis_server, tmp_path: Path) -> Iterator[tuple[str, psutil.Process]]:
    """One replica: gunicorn (master and its worker) serving the app factory."""
    port = free_port_block()
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "APP_REPLICA": "r1",
        "APP_REDIS_URL": redis_server.url,
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "app" / "gunicorn.conf.py")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc, log)
        yield base, psutil.Process(proc.pid)
    finally:
        _signal_tree(psutil.Process(proc.pid), signal.SIGCONT)  # never leave it stopped
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_healthy(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"gunicorn never became healthy:\n{log.read_text()}")


def _signal_tree(proc: psutil.Process, sig: signal.Signals) -> None:
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)


class BareWorkers:
    """A launcher like the docker runtime's: workers started apart, with no HSCALE_*
    variable (containers have none), so they learn the load model from the master."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def __call__(self, plan: LocustPlan, out: Path, hscale_env: dict[str, str]):
        port = free_port_block()
        locustfile = str(paths.locustfile(plan.scenario))
        env = {k: v for k, v in os.environ.items() if not k.startswith("HSCALE_")}
        worker = [sys.executable, "-m", "locust", "-f", locustfile, "--worker"]
        worker += ["--master-host", "127.0.0.1", "--master-port", str(port)]
        for i in range(plan.workers):
            with (out / f"worker{i}.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(worker, env=env, stdout=log, stderr=subprocess.STDOUT)
                )
        master = [sys.executable, "-m", "locust", *locust_options(plan, locustfile, str(out))]
        master += ["--master", "--expect-workers", str(plan.workers)]
        master += ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
        return master, {}

    def close(self) -> None:
        for proc in self.procs:  # they quit with their master
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _run(
    tmp_path: Path,
    host: str,
    *,
    load: str,
    workers: int = 0,
    tick: Callable[[str], None] = lambda phase: None,
    launcher: Launcher | None = None,
) -> dict:
    plan = LocustPlan(
        "json",
        host,
        USERS,
        WARMUP_S + MEASURE_S,
        workers,
        load=load,
        rate=RATE if load == "rate" else None,
    )
    out = tmp_path / f"{load}-{workers}"
    out.mkdir()
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    return run_point(plan, WARMUP_S, out, run_id, lambda: {}, tick, launcher).tally


class Stall:
    """A tick for run_point: SIGSTOP the server STALL_AT_S into the measurement window,
    SIGCONT it STALL_S later (in a thread: run_point keeps polling meanwhile)."""

    def __init__(self, server: psutil.Process) -> None:
        self.server = server
        self.thread: threading.Thread | None = None
        self.stopped_s = 0.0

    def __call__(self, phase: str) -> None:
        if phase == "measure" and self.thread is None:
            self.thread = threading.Thread(target=self._stall, daemon=True)
            self.thread.start()

    def _stall(self) -> None:
        time.sleep(STALL_AT_S)
        start = time.monotonic()
        _signal_tree(self.server, signal.SIGSTOP)
        try:
            time.sleep(STALL_S)
        finally:
            _signal_tree(self.server, signal.SIGCONT)
            self.stopped_s = time.monotonic() - start

    def join(self) -> None:
        assert self.thread is not None, "the measurement window never started"
        self.thread.join(10)
        assert self.stopped_s >= STALL_S


def _slow_count(tally: dict, ms: float = SLOW_MS) -> int:
    hist = decode(tally["histogram"])
    return sum(
        v.count_at_value_iterated_to
        for v in hist.get_recorded_iterator()
        if v.value_iterated_to >= ms * 1000
    )


@pytest.mark.parametrize(
    ("workers", "bare"),
    [(0, False), (2, False), (2, True)],
    ids=["one-process", "forked-workers", "workers-without-env"],
)
def test_rate_below_capacity_is_sustained(server, tmp_path: Path, workers: int, bare: bool) -> None:
    launcher = BareWorkers() if bare else None
    try:
        tally = _run(tmp_path, server[0], load="rate", workers=workers, launcher=launcher)
    finally:
        if launcher:
            launcher.close()
    achieved = tally["requests"] / tally["duration_s"]
    ol = tally["open_loop"]
    print(f"workers={workers} achieved={achieved:.1f} req/s open_loop={ol}")
    print(f"latency {percentiles_ms(tally['histogram'])}")
    assert tally["failures"] == 0 and tally["workers"] == workers
    assert abs(achieved / RATE - 1) < 0.10
    assert ol["offered_rps"] == RATE and ol["users"] == USERS and ol["late_threshold_ms"] > 0
    # every request is a paced send (json: one request per iteration), merged exactly
    assert ol["intended_sends"] == tally["requests"]
    assert decode(tally["histogram"]).get_total_count() == tally["requests"]
    # A pacer that did not keep up would be late on most sends; a 2-core host busy with
    # the server and two forked workers makes a few late by over 10 ms (4% seen in CI).
    assert ol["late_sends"] <= 0.08 * ol["intended_sends"]


def test_stall_shows_in_open_loop_not_in_closed_loop(server, tmp_path: Path) -> None:
    host, proc = server
    got = {}
    for load in ("rate", "closed"):
        stall = Stall(proc)
        tally = _run(tmp_path, host, load=load, tick=stall)
        stall.join()
        slow = _slow_count(tally)
        got[load] = (tally, slow, slow / tally["requests"])
        print(
            f"{load}: requests={tally['requests']} slow(>= {SLOW_MS:g} ms)={slow} "
            f"({slow / tally['requests']:.1%}) latency={percentiles_ms(tally['histogram'])} "
            f"open_loop={tally['open_loop']}"
        )
    (rate, rate_slow, rate_share), (closed, closed_slow, closed_share) = got.values()
    # Open loop: every arrival scheduled during the stall waited for it, timed from its
    # intended send, so about RATE x STALL_S requests are slow and p99 shows the stall.
    assert rate_slow >= 0.5 * RATE * STALL_S
    assert rate_share >= 0.08
    assert percentiles_ms(rate["histogram"])["p99"] >= 500
    assert rate["open_loop"]["late_sends"] >= 0.5 * RATE * STALL_S
    assert rate["open_loop"]["max_send_lag_ms"] >= 0.5 * STALL_S * 1000
    # Closed loop: each user waits once, then sends nothing more during the stall, so
    # only about USERS requests see it, among many more requests in all.
    assert closed["open_loop"] is None
    assert closed_slow <= 2 * USERS
    assert closed_share < rate_share / 5
    assert percentiles_ms(closed["histogram"])["p99"] < percentiles_ms(rate["histogram"])["p99"]
