"""Does the load generator bend the curve? hscale's Locust against wrk on one stack.

Starts the stack at N replicas once, then alternates, ROUNDS times: wrk for SECONDS, then
hscale's Locust run (its warm-up cut and tally) for the same window. Prints each run's
throughput, the load generator's CPU and the replicas' CPU per request, and the ratio of
the means with a t interval. Needs `wrk` (Debian package) on PATH.

    .venv/bin/python scripts/loadgen_bias.py --runtime docker --replicas 4 --rounds 3
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from statistics import mean, stdev

import psutil
from scipy import stats

from hscale import loadgen, runtimes, settings
from hscale.results import new_run_id


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runtime", default="docker", choices=("docker", "local"))
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--scenario", default="json", help="hscale's side; wrk always GETs /json")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    return p.parse_args()


def replica_cpu(rt) -> float:
    return sum(
        c.cpu_s
        for name, c in rt.counters().items()
        if name not in ("nginx", "store", "engine", "loadgen")
    )


def run_wrk(url: str, connections: int, seconds: float) -> tuple[float, float]:
    """(requests/s, CPU-seconds wrk used)."""
    wrk = subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", url],
        stdout=subprocess.PIPE,
        text=True,
    )
    proc = psutil.Process(wrk.pid)
    cpu = 0.0
    while wrk.poll() is None:
        try:
            t = proc.cpu_times()
            cpu = t.user + t.system
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    out = wrk.stdout.read() if wrk.stdout else ""
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return float(m.group(1)), cpu


def main() -> None:
    a = parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    s = settings.load({"SWEEP": str(a.replicas), "SCENARIO": a.scenario, "RUNTIME": a.runtime})
    run_id = new_run_id("bias")
    work = Path(tempfile.mkdtemp(prefix="hscale-bias-"))
    rt = runtimes.create(s, run_id, work / "runtime")
    rt.preflight()
    rows: dict[str, list[tuple[float, float, float]]] = {"wrk": [], "locust": []}
    try:
        rt.start(a.replicas)
        users = s.users_at(a.replicas)
        run_wrk(f"{rt.endpoint}/json", users, 3)  # warm
        for r in range(a.rounds):
            c0 = replica_cpu(rt)
            x, cpu = run_wrk(f"{rt.endpoint}/json", users, a.seconds)
            d = (replica_cpu(rt) - c0) / (x * a.seconds) * 1000
            rows["wrk"].append((x, cpu / a.seconds, d))
            plan = loadgen.LocustPlan(a.scenario, rt.endpoint, users, a.warmup + a.seconds)
            rep: dict = {}

            def counters(rep=rep) -> dict:
                rep.setdefault("c", []).append(replica_cpu(rt))
                return {}

            run = loadgen.run_point(
                plan, a.warmup, work / f"r{r}", run_id, counters, launcher=rt.loadgen_launcher()
            )
            secs = run.tally["duration_s"]
            x = (run.tally["requests"] - run.tally["failures"]) / secs
            lg = run.counters_end["loadgen"].cpu_s - run.counters_start["loadgen"].cpu_s
            d = (rep["c"][-1] - rep["c"][0]) / (x * secs) * 1000
            rows["locust"].append((x, lg / secs, d))
            print(f"round {r + 1}: wrk {rows['wrk'][-1][0]:.0f} req/s, locust {x:.0f} req/s")
    finally:
        rt.stop()
        shutil.rmtree(work, ignore_errors=True)
    for name, rs in rows.items():
        xs = [x for x, _, _ in rs]
        print(
            f"{name:6s}: {mean(xs):7.0f} req/s (trials {', '.join(f'{x:.0f}' for x in xs)}), "
            f"load generator {mean(c for _, c, _ in rs):.2f} cores, "
            f"replica CPU {mean(d for _, _, d in rs):.3f} ms/request"
        )
    lx, wx = [x for x, _, _ in rows["locust"]], [x for x, _, _ in rows["wrk"]]
    ratio = mean(lx) / mean(wx)
    if len(lx) > 1:
        t = stats.t.ppf(0.975, 2 * len(lx) - 2)
        rel = t * (((stdev(lx) / mean(lx)) ** 2 + (stdev(wx) / mean(wx)) ** 2) / len(lx)) ** 0.5
        print(f"hscale / wrk = {ratio:.3f} (+-{rel:.1%})")
    else:
        print(f"hscale / wrk = {ratio:.3f}")


if __name__ == "__main__":
    main()
