"""The listener's consistency tally against real stores: the kv, session and counter
scenarios through hscale.loadgen.run_point, against two gunicorn replicas of the app
behind a real nginx (round robin, as a sweep runs them). On Redis every read of a user's
own write is fresh and the counter lands between acknowledged and sent increments; on
memory (a dict per replica) reads miss or go stale and the counters diverge."""

from __future__ import annotations

import csv
import json
import os
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hscale_testkit import free_port_block

from hscale import paths
from hscale.analysis.consistency import judge
from hscale.loadgen import LocustPlan, run_point
from hscale.procs import ManagedProcess, child_env, wait_http
from hscale.runtimes.binaries import find_binary

pytestmark = pytest.mark.e2e

REPLICAS = 2
USERS = 8
WARMUP_S, RUN_S = 1.0, 2.5


class Stack:
    """REPLICAS gunicorn replicas (one worker each) behind nginx, all on loopback."""

    def __init__(
        self, workdir: Path, store_env: dict[str, str], weights: tuple[int, ...] = (1, 1)
    ) -> None:
        self.workdir, self.procs, self.weights = workdir, [], weights
        self.run_id = f"test-{uuid.uuid4().hex[:8]}"
        first = free_port_block(REPLICAS)
        try:
            for i in range(REPLICAS):
                self._replica(f"replica-{i + 1}", first + i, store_env)
            self.url = self._nginx([first + i for i in range(REPLICAS)])
        except BaseException:
            self.close()
            raise

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.workdir / f"{name}.log"
        self.procs.append(ManagedProcess(name, argv, log, child_env(self.run_id, env)))

    def _replica(self, name: str, port: int, store_env: dict[str, str]) -> None:
        env = {"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1"}
        argv = [sys.executable, "-m", "gunicorn", "-c", str(paths.GUNICORN_CONF)]
        self._spawn(name, argv, {**env, "APP_REPLICA": name, **store_env})
        wait_http(f"http://127.0.0.1:{port}/readyz", self.procs[-1], timeout=30)

    def _nginx(self, ports: list[int]) -> str:
        port, tmp = free_port_block(), self.workdir / "nginx"
        tmp.mkdir()
        conf = tmp / "nginx.conf"
        conf.write_text(
            paths.render_nginx(
                {
                    "DAEMON": "off",
                    "TMP": str(tmp),
                    "ERROR_LOG": str(tmp / "error.log"),
                    "ACCESS_LOG": "off",
                    "USER_DIRECTIVE": "user root;" if os.geteuid() == 0 else "",
                    "LISTEN": f"127.0.0.1:{port}",
                    "UPSTREAM_SERVERS": "\n".join(
                        f"server 127.0.0.1:{p} weight={w};"
                        for p, w in zip(ports, self.weights, strict=True)
                    ),
                }
            )
        )
        self._spawn("nginx", [find_binary("nginx"), "-c", str(conf), "-p", str(tmp)])
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/nginx-health", self.procs[-1])
        return url

    def counters(self) -> dict[str, int]:
        """GET /counter through nginx until every replica answered, as the harness reads it."""
        seen: dict[str, int] = {}
        for _ in range(20 * REPLICAS):
            with urllib.request.urlopen(f"{self.url}/counter", timeout=5) as r:
                seen[r.headers["X-Replica"]] = json.load(r)["value"]
            if len(seen) == REPLICAS:
                return seen
        raise AssertionError(f"only {sorted(seen)} answered GET /counter")

    def run(self, scenario: str, out: Path, workers: int = 0) -> dict:
        """One Locust run; its tally and the judge's verdict on it."""
        before = self.counters()
        plan = LocustPlan(scenario, self.url, USERS, RUN_S, workers)
        tally = run_point(plan, WARMUP_S, out, self.run_id, lambda: {}).tally
        verdict = judge(tally["consistency"], before, self.counters())
        print(f"{scenario}: {json.dumps(tally['consistency'])}\n  {json.dumps(verdict)}")
        return {"tally": tally, "verdict": verdict, **tally["consistency"]}

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture(scope="module")
def redis_stack(redis_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"APP_STORE": "redis", "APP_REDIS_URL": redis_server.url}
    stack = Stack(tmp_path_factory.mktemp("redis-stack"), env)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def memory_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Uneven weights: an even round robin may split the increments exactly in half, and
    # per-replica counters that agree by chance would show as lost increments instead.
    stack = Stack(tmp_path_factory.mktemp("memory-stack"), {"APP_STORE": "memory"}, (2, 1))
    yield stack
    stack.close()


@pytest.mark.parametrize("scenario", ["kv", "session"])
def test_shared_store_reads_every_own_write(redis_stack: Stack, tmp_path: Path, scenario: str):
    got = redis_stack.run(scenario, tmp_path)
    reads = got[scenario]
    assert reads["writes"] > 20 and reads["reads"] > 60
    assert reads["missing"] == reads["stale"] == reads["failed"] == 0
    assert got["tally"]["failures"] == 0
    assert got["verdict"]["consistent"] and got["verdict"]["problems"] == []
    # The tally counts nginx's X-Upstream: one address per replica (the harness names them).
    upstreams = got["tally"]["per_replica_requests"]
    assert len(upstreams) == 2 and all(a.startswith("127.0.0.1:") for a in upstreams), upstreams


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "two-workers"])
def test_shared_counter_lands_between_acknowledged_and_sent(
    redis_stack: Stack, tmp_path: Path, workers: int
):
    got = redis_stack.run("counter", tmp_path, workers)
    counter, verdict = got["counter"], got["verdict"]["counter"]
    assert counter["acknowledged"] > 60 and counter["failed"] == 0
    assert counter["attempts"] == counter["acknowledged"] + counter["abandoned"]
    # the whole run: warm-up included, unlike the measurement window's requests
    assert counter["acknowledged"] > got["tally"]["requests"]
    assert verdict["replicas_agree"] and verdict["bound_ok"]
    assert counter["acknowledged"] <= verdict["delta"] <= counter["attempts"]
    assert got["verdict"]["consistent"]


@pytest.mark.parametrize("scenario", ["kv", "session"])
def test_memory_reads_miss_and_go_stale(memory_stack: Stack, tmp_path: Path, scenario: str):
    got = memory_stack.run(scenario, tmp_path)
    reads, tally = got[scenario], got["tally"]
    assert reads["missing"] > 0 and reads["stale"] > 0
    # a bad read is a Locust failure too, so the error-rate check sees it (a session is
    # missing only until both replicas hold one: maybe in the warm-up alone)
    assert tally["failures"] > 0
    assert any(f"{scenario} read stale" in e for e in tally["errors"])
    problems = got["verdict"]["problems"]
    assert not got["verdict"]["consistent"]
    assert any(p.startswith(f"{scenario}: {reads['missing']:,} of ") for p in problems)


def test_memory_counters_diverge(memory_stack: Stack, tmp_path: Path):
    got = memory_stack.run("counter", tmp_path)
    counter, verdict = got["counter"], got["verdict"]
    assert verdict["counter"]["replicas_agree"] is False and not verdict["consistent"]
    deltas = verdict["counter"]["by_replica_delta"]
    # each increment landed on one replica only: together they hold every acknowledged one
    assert counter["acknowledged"] <= sum(deltas.values()) <= counter["attempts"]
    (problem,) = verdict["problems"]
    expected = ", ".join(f"{r} counted {d:,}" for r, d in sorted(deltas.items()))
    assert problem == (
        f"counters diverge across replicas: {expected}; "
        f"{counter['acknowledged']:,} increments acknowledged"
    )


def test_mixed_feeds_the_same_counts(redis_stack: Stack, tmp_path: Path):
    got = redis_stack.run("mixed", tmp_path)
    counter, kv, verdict = got["counter"], got["kv"], got["verdict"]
    assert counter["acknowledged"] > 0 and kv["reads"] > 0
    assert kv["missing"] == kv["stale"] == 0
    assert verdict["counter"]["bound_ok"] and verdict["consistent"]


def test_a_lingering_locust_returns_at_the_tally_and_finishes_its_csv(
    redis_stack: Stack, tmp_path: Path
):
    """run_point(linger=True), as a sweep's trial runs: it returns once the window's tally
    is written, while Locust still waits a CSV tick; finish() then sees it exit, and its
    locust_stats.csv covers the whole window."""
    plan = LocustPlan("json", redis_stack.url, USERS, RUN_S)
    run = run_point(plan, WARMUP_S, tmp_path, redis_stack.run_id, lambda: {}, linger=True)
    assert run.lingering is not None and run.lingering.alive() and run.exit_code is None
    assert run.tally["phase"] == "measure" and run.tally["requests"] > 0
    run.finish()
    assert run.lingering is None and run.exit_code == 0
    rows = csv.DictReader((tmp_path / "locust_stats.csv").open())
    (total,) = [r for r in rows if r["Name"] == "Aggregated"]
    assert int(total["Request Count"]) == run.tally["requests"]
