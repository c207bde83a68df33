"""`hscale loadgen-check`: hscale's Locust against wrk on one stack, on this host.

Locust is not free: on a 2-vCPU host it uses up to half a core beside the replicas at the
largest N, and how much that bends X(N) and E(N) differs from one machine to the next
(docs/measurement.md). This measures it here. It starts the stack with the sweep's
ballast and speed probe, at N = 1 and then at the largest N, and runs TRIALS rounds of a
wrk window and a Locust window (scenario json, WARMUP + DURATION each, the order flipped
every round). analysis/loadgen_check.py turns the pairs into ratios; the result goes to
results/<run>/loadgen_check.json, and every later sweep on this host states the latest.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from hscale import loadgen, sysinfo
from hscale.analysis import loadgen_check
from hscale.analysis.loadgen_check import Pair, Window
from hscale.ballast import Ballast
from hscale.probe import Probe, speed
from hscale.results import RunDir, now_iso, write_json
from hscale.runtimes.base import Runtime
from hscale.settings import Settings, UsageError
from hscale.sweep import Interrupted, interruptible, split_of, uninterruptible

FILE = "loadgen_check.json"
SCHEMA_VERSION = 1
WRK_PATH = "/json"  # scenario json's one request: both generators ask the same thing
WRK_WARM_S = 3  # wrk before the first round at each N: connections and caches warm


def check_usable(s: Settings, reference: bool) -> None:
    """Usage errors before anything starts."""
    if not shutil.which("wrk"):
        raise UsageError("loadgen-check needs wrk on PATH (Debian's wrk; make setup installs it)")
    if not reference:
        raise UsageError(
            "loadgen-check measures hscale's Locust on the reference app, not APP/IMAGE"
        )
    if s.scenario != "json":
        raise UsageError(
            f"loadgen-check compares with wrk's GET {WRK_PATH}: SCENARIO=json, not {s.scenario}"
        )
    if s.load != "closed" or s.loadgen_workers:
        raise UsageError(
            "loadgen-check runs one Locust process in closed loop: unset LOAD and LOADGEN_WORKERS"
        )


def run_wrk(
    url: str, connections: int, seconds: float, headers: tuple[str, ...] = ()
) -> tuple[float, float]:
    """(requests/s, CPU-seconds wrk used): one thread, as many connections as Locust has
    users; `headers` as "Name: value" (scripts/loadgen_bias.py sends Locust's)."""
    extra = [arg for h in headers for arg in ("-H", h)]
    wrk = subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", *extra, url],
        stdout=subprocess.PIPE,
        text=True,
    )
    proc = psutil.Process(wrk.pid)
    cpu = 0.0
    while wrk.poll() is None:
        try:
            t = proc.cpu_times()
            cpu = t.user + t.system  # wrk's own: the last reading before it exits
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    out = wrk.stdout.read() if wrk.stdout else ""
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return float(m.group(1)), cpu


def replica_cpu(rt: Runtime) -> float:
    return sum(
        c.cpu_s
        for name, c in rt.counters().items()
        if name not in ("nginx", "store", "engine", "loadgen")
    )


def probe_speed(probe: Probe, start: tuple[int, float] | None) -> float | None:
    return speed(start, probe.reading()) if start else None


class Check:
    """One check's stack, ballast and probe, and its windows."""

    def __init__(self, s: Settings, rd: RunDir, rt: Runtime, log: Callable[[str], None]) -> None:
        self.s, self.rd, self.rt, self.log = s, rd, rt, log
        logs = rd.path / "runtime" / "logs"
        self.ballast = Ballast(rd.run_id, s.replica_cpus, logs, s.cpu_period_us)
        self.probe = Probe(rd.run_id, logs)
        self.found: dict[int, list[Pair]] = {}  # (wrk, locust) per round, by N: kept if stopped

    def wrk(self, users: int) -> Window:
        c0, p0 = replica_cpu(self.rt), self.probe.reading()
        rps, cpu = run_wrk(self.rt.endpoint + WRK_PATH, users, self.s.duration)
        spent = replica_cpu(self.rt) - c0
        return Window(
            rps,
            cpu / self.s.duration,
            spent / (rps * self.s.duration) * 1000,
            probe_speed(self.probe, p0),
        )

    def locust(self, n: int, users: int, r: int) -> Window:
        s, rt = self.s, self.rt
        plan = loadgen.LocustPlan("json", rt.endpoint, users, s.warmup + s.duration)
        marks: list[tuple[float, tuple[int, float] | None]] = []

        def counters() -> dict:  # at the window's start and end
            marks.append((replica_cpu(rt), self.probe.reading()))
            return {}

        out = self.rd.path / "points" / f"n{n}" / f"r{r}"
        out.mkdir(parents=True, exist_ok=True)
        run = loadgen.run_point(
            plan, s.warmup, out, self.rd.run_id, counters, launcher=rt.loadgen_launcher()
        )
        tally = run.tally
        if tally["failures"]:
            raise RuntimeError(f"N={n}: Locust saw {tally['failures']} failures: {tally['errors']}")
        secs = tally["duration_s"]
        rps = tally["requests"] / secs
        gen = run.counters_end["loadgen"].cpu_s - run.counters_start["loadgen"].cpu_s
        (r0, p0), (r1, p1) = marks[0], marks[-1]
        return Window(
            rps, gen / secs, (r1 - r0) / (rps * secs) * 1000, speed(p0, p1) if p0 and p1 else None
        )

    def run(self) -> None:
        s, rt = self.s, self.rt
        split, _ = split_of(s, rt)
        if split is not None:  # as the sweep's CPU_SPLIT
            from hscale import cpusplit

            rt.replica_cpuset = self.ballast.cpuset = self.probe.cpuset = split.replicas
            cpusplit.pin_self(split.others)
        largest = max(s.sweep)
        self.probe.start()
        for i, n in enumerate(sorted({1, largest})):
            if i == 0:
                rt.start(n)
            else:
                rt.resize(n)
            if s.ballast:
                self.ballast.resize(largest - n)
            users = s.users_at(n)
            run_wrk(self.rt.endpoint + WRK_PATH, users, WRK_WARM_S)
            pairs = self.found.setdefault(n, [])
            for r in range(s.trials):
                if r % 2 == 0:
                    wrk = self.wrk(users)
                    lc = self.locust(n, users, r)
                else:
                    lc = self.locust(n, users, r)
                    wrk = self.wrk(users)
                pairs.append((wrk, lc))
                self.log(
                    f"N={n} round {r + 1}/{s.trials}: wrk {wrk.rps:.0f} req/s, "
                    f"hscale {lc.rps:.0f} req/s"
                )

    def stop(self) -> None:
        self.ballast.stop()
        self.probe.stop()
        self.rt.stop()


def run(s: Settings, rd: RunDir, rt: Runtime, log: Callable[[str], None]) -> dict:
    """The check, written to rd/loadgen_check.json whatever its end (a failed or
    interrupted one keeps the rounds it finished)."""
    doc: dict = {
        "schema_version": SCHEMA_VERSION,
        "run_id": rd.run_id,
        "status": "running",
        "started_at": now_iso(),
        "ended_at": None,
        "error": None,
        "host": sysinfo.host(),
        "runtime": rt.name,
        "replicas": max(s.sweep),
        "replica_cpus": s.replica_cpus,
        "cpu_split": s.cpu_split,
        "window_s": s.duration,
        "result": None,
    }
    rd.path.mkdir(parents=True, exist_ok=True)
    write_json(rd.path / FILE, doc)
    check = Check(s, rd, rt, log)
    with interruptible():
        try:
            check.run()
            doc["status"] = "complete"
        except (KeyboardInterrupt, Interrupted):
            doc["status"], doc["error"] = "interrupted", "interrupted"
        except Exception as exc:  # recorded; the caller exits 1
            doc["status"], doc["error"] = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            with uninterruptible():
                check.stop()
                doc["ended_at"] = now_iso()
                found = {n: pairs for n, pairs in check.found.items() if pairs}
                if found:
                    doc["result"] = loadgen_check.summarize(found)
                write_json(rd.path / FILE, doc)
    return doc


table = loadgen_check.table  # the console's lines, for the CLI


def same_host(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("hostname", "cpu_model", "cpu_count", "kernel"))


def latest_for(results: Path, runtime: str, cpu_split: str) -> dict | None:
    """The newest complete check on this host with this runtime and CPU split, if any."""
    here = sysinfo.host()
    for path in sorted(results.glob(f"*/{FILE}"), reverse=True):  # run ids sort by time
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if (
            doc.get("status") == "complete"
            and doc.get("result")
            and doc.get("runtime") == runtime
            and doc.get("cpu_split") == cpu_split
            and same_host(doc.get("host") or {}, here)
        ):
            return {k: doc[k] for k in ("run_id", "ended_at", "replicas", "result")}
    return None
