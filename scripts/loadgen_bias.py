"""Does the load generator bend the curve? hscale's Locust against wrk on one stack.

At each of two N (1 and --replicas), with the sweep's ballast beside the stack, runs
ROUNDS pairs of windows: wrk for SECONDS and hscale's Locust run (its warm-up cut and
tally) for the same window, the order flipped every round so slow drift cancels. Each
pair gives log(locust / wrk); their mean and t interval are the bias at that N, and the
difference between the two N is the bias the load generator puts into E(N): what the
sweep's efficiency would read if only the generator changed. Also prints each side's
throughput, the load generator's CPU and the replicas' CPU per request. Needs `wrk`
(Debian package) on PATH; a benchmark: run it alone. `hscale loadgen-check` (make
loadgen-check) is this measurement as a command, whose result every later sweep on the host
states; this script keeps the experiments' arms (--like-locust, --balance) beside it.

    .venv/bin/python scripts/loadgen_bias.py --runtime docker --replicas 4 --rounds 10
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path
from statistics import mean

import psutil
from scipy import stats

from hscale import cpusplit, loadgen, runtimes, settings
from hscale.analysis.loadgen_check import ratio_ci
from hscale.balance import top_up_cores
from hscale.ballast import Ballast
from hscale.loadgen_check import replica_cpu, run_wrk
from hscale.probe import Probe, speed
from hscale.results import new_run_id
from hscale.sweep import split_of


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runtime", default="docker", choices=("docker", "local"))
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--scenario", default="json", help="hscale's side; wrk always GETs /json")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument(
        "--like-locust",
        action="store_true",
        help="add a third arm: wrk sending Locust's request headers, beside a busy loop under "
        "a quota equal to the CPU Locust used in the same round (host busyness and headers)",
    )
    p.add_argument(
        "--balance",
        action="store_true",
        help="as the sweep's BALANCE_HOST: N = the largest first, then at N = 1 each generator "
        "gets a top-up loop of what the rest of the host used more at the largest N with it",
    )
    p.add_argument(
        "--split",
        action="store_true",
        help="as the sweep's CPU_SPLIT=1: replicas and ballast on CPUs of their own, wrk, "
        "Locust, nginx and the store on the others",
    )
    return p.parse_args()


# What Locust's FastHttpUser sends beside Host (geventhttpclient and locust/contrib/fasthttp)
LOCUST_HEADERS = ("User-Agent: python/gevent-http-client-2", "Accept-Encoding: gzip, deflate, br")


# req/s, load generator cores, replica CPU ms/request, the speed probe's work per CPU-ms
Row = tuple[float, float, float, float]


def host_busy_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


class Others:
    """Host CPU beside the replicas and the ballast, per generator and N (balance.py's)."""

    def __init__(self, rt, ballast: Ballast) -> None:
        self.rt, self.ballast, self.seen = rt, ballast, {}

    def window(self, arm: str, n: int, fn):
        if arm == "locust":  # read over its measurement window, not Locust's start
            cut: list[float] = []
            row = fn(cut)
            self.seen.setdefault(arm, []).append((n, cut[0]))
            return row
        b0, l0, r0, t0 = (
            host_busy_s(),
            self.ballast.cpu_seconds(),
            replica_cpu(self.rt),
            time.monotonic(),
        )
        row = fn()
        secs = time.monotonic() - t0
        busy = (host_busy_s() - b0) - (self.ballast.cpu_seconds() - l0)
        cores = max(0.0, (busy - (replica_cpu(self.rt) - r0)) / secs)
        self.seen.setdefault(arm, []).append((n, cores))
        return row

    def top_up(self, arm: str, n: int, largest: int) -> float:
        return top_up_cores(self.seen.get(arm, []), n, largest)


def locust_window(
    rt, a: argparse.Namespace, s, users: int, out: Path, run_id: str, probe: Probe,
    ballast=None, seen=None,
) -> Row:  # fmt: skip
    """Locust's run; with `seen`, appends the rest of the host's cores over the window."""
    plan = loadgen.LocustPlan(a.scenario, rt.endpoint, users, a.warmup + a.seconds)
    marks: list[tuple[float, float, float]] = []
    readings = []

    def counters() -> dict:
        lb = ballast.cpu_seconds() if ballast else 0.0
        marks.append((replica_cpu(rt), host_busy_s(), lb))
        readings.append(probe.reading())
        return {}

    run = loadgen.run_point(plan, a.warmup, out, run_id, counters, launcher=rt.loadgen_launcher())
    secs = run.tally["duration_s"]
    x = (run.tally["requests"] - run.tally["failures"]) / secs
    lg = run.counters_end["loadgen"].cpu_s - run.counters_start["loadgen"].cpu_s
    (r0, b0, l0), (r1, b1, l1) = marks[0], marks[-1]
    if seen is not None:
        seen.append(max(0.0, ((b1 - b0) - (l1 - l0) - (r1 - r0)) / secs))
    return x, lg / secs, (r1 - r0) / (x * secs) * 1000, probe_speed(readings[0], readings[-1])


def probe_speed(r0, r1) -> float:
    return (speed(r0, r1) or math.nan) if r0 and r1 else math.nan


def wrk_window(rt, a: argparse.Namespace, users: int, probe: Probe) -> Row:
    c0, p0 = replica_cpu(rt), probe.reading()
    x, cpu = run_wrk(f"{rt.endpoint}/json", users, a.seconds)
    rep = (replica_cpu(rt) - c0) / (x * a.seconds) * 1000
    return x, cpu / a.seconds, rep, probe_speed(p0, probe.reading())


def like_locust_window(rt, a: argparse.Namespace, users: int, cores: float, run_id: str) -> Row:
    """wrk with Locust's headers, and a busy loop using what Locust's process used."""
    burner = Ballast(f"{run_id}-burn", max(0.05, cores), Path(tempfile.mkdtemp()))
    burner.resize(1)
    try:
        c0 = replica_cpu(rt)
        x, cpu = run_wrk(f"{rt.endpoint}/json", users, a.seconds, LOCUST_HEADERS)
        rep = replica_cpu(rt) - c0
    finally:
        burner.stop()
    return x, cpu / a.seconds, rep / (x * a.seconds) * 1000, math.nan


def log_ratio_ci(pairs: list[tuple[Row, Row]]) -> tuple[float, float, float]:
    """Mean of log(locust / wrk) over the rounds, as a ratio, with its 95% t interval."""
    ci = ratio_ci([math.log(lc[0] / wr[0]) for wr, lc in pairs])
    return ci["ratio"], ci["low"] or ci["ratio"], ci["high"] or ci["ratio"]


def speed_adjusted(found: dict[int, list[tuple[Row, Row]]]) -> tuple[float, dict]:
    """The probe as a control variate on each pair: log(locust / wrk) regressed on the log
    ratio of the probe's speeds in the two windows, one slope over every N (intercepts by
    N); returns the slope and, per N, the pairs' log ratios with the slope taken out."""
    dev = [
        (d - mean(dd for dd, _ in rows), e - mean(ee for _, ee in rows))
        for rows in (
            [(math.log(lc[0] / wr[0]), math.log(lc[3] / wr[3])) for wr, lc in pairs]
            for pairs in found.values()
        )
        for d, e in rows
    ]
    sxx = sum(e * e for _, e in dev)
    beta = sum(d * e for d, e in dev) / sxx if sxx > 0 else 0.0
    return beta, {
        n: [math.log(lc[0] / wr[0]) - beta * math.log(lc[3] / wr[3]) for wr, lc in pairs]
        for n, pairs in found.items()
    }


def main() -> None:
    a = parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    knobs = {"SWEEP": f"1,{a.replicas}", "SCENARIO": a.scenario, "RUNTIME": a.runtime}
    s = settings.load(knobs | ({"CPU_SPLIT": "1"} if a.split else {}))
    run_id = new_run_id("bias")
    work = Path(tempfile.mkdtemp(prefix="hscale-bias-"))
    rt = runtimes.create(s, run_id, work / "runtime")
    rt.preflight()
    ballast = Ballast(run_id, s.replica_cpus, work, s.cpu_period_us)
    probe = Probe(run_id, work)
    if a.split:  # what the sweep's split_cpus() does
        split, _ = split_of(s, rt)
        assert split is not None
        rt.replica_cpuset = ballast.cpuset = probe.cpuset = split.replicas
        cpusplit.pin_self(split.others)
    probe.start()
    found: dict[int, list[tuple[Row, Row]]] = {}
    like: dict[int, list[tuple[Row, Row]]] = {}  # (wrk like Locust, Locust) pairs
    try:
        others = Others(rt, ballast)
        order = (a.replicas, 1) if a.balance else (1, a.replicas)
        for i, n in enumerate(order):
            if i == 0:
                rt.start(n)
            else:
                rt.resize(n)
            ballast.resize(a.replicas - n)
            users = s.users_at(n)
            run_wrk(f"{rt.endpoint}/json", users, 3)  # warm
            pairs = found.setdefault(n, [])
            for r in range(a.rounds):
                out = work / f"n{n}-r{r}"

                def wrk_arm(n: int = n, users: int = users) -> Row:
                    if a.balance:
                        ballast.top_up(others.top_up("wrk", n, a.replicas))
                    return others.window("wrk", n, lambda: wrk_window(rt, a, users, probe))

                def locust_arm(n: int = n, users: int = users, out: Path = out) -> Row:
                    if a.balance:
                        ballast.top_up(others.top_up("locust", n, a.replicas))
                    return others.window(
                        "locust",
                        n,
                        lambda cut: locust_window(
                            rt, a, s, users, out, run_id, probe, ballast, cut
                        ),
                    )

                if r % 2 == 0:
                    wr = wrk_arm()
                    lc = locust_arm()
                else:
                    lc = locust_arm()
                    wr = wrk_arm()
                ballast.top_up(0)
                pairs.append((wr, lc))
                line = f"N={n} round {r + 1}: wrk {wr[0]:.0f} req/s, locust {lc[0]:.0f} req/s"
                if a.like_locust:
                    ll = like_locust_window(rt, a, users, lc[1], run_id)
                    like.setdefault(n, []).append((ll, lc))
                    line += f", wrk like locust {ll[0]:.0f} req/s"
                print(line, flush=True)
    finally:
        ballast.stop()
        probe.stop()
        rt.stop()
        shutil.rmtree(work, ignore_errors=True)
    for arm, seen in others.seen.items():
        by_n = {n: mean(c for m, c in seen if m == n) for n in {m for m, _ in seen}}
        listed = ", ".join(f"N={n} {c:.2f}" for n, c in sorted(by_n.items()))
        print(f"{arm}: rest of the host {listed} cores")
    for n, pairs in sorted(found.items()):
        for name, rows in (("wrk", [w for w, _ in pairs]), ("locust", [c for _, c in pairs])):
            print(
                f"N={n} {name:6s}: {mean(r[0] for r in rows):7.0f} req/s, load generator "
                f"{mean(r[1] for r in rows):.2f} cores, replica CPU "
                f"{mean(r[2] for r in rows):.3f} ms/request"
            )
        ratio, lo, hi = log_ratio_ci(pairs)
        print(f"N={n} hscale / wrk = {ratio:.3f} [{lo:.3f}, {hi:.3f}] over {len(pairs)} rounds")
        if n in like:
            rows = [w for w, _ in like[n]]
            print(
                f"N={n} wrk like locust: {mean(r[0] for r in rows):7.0f} req/s, replica CPU "
                f"{mean(r[2] for r in rows):.3f} ms/request"
            )
            ratio, lo, hi = log_ratio_ci(like[n])
            print(f"N={n} hscale / wrk like locust = {ratio:.3f} [{lo:.3f}, {hi:.3f}]")
    if len(found) != 2:
        return
    beta, adjusted = speed_adjusted(found)
    raw = {n: [math.log(c[0] / w[0]) for w, c in pairs] for n, pairs in found.items()}
    for name, logs in (("raw", raw), (f"probe-adjusted (beta {beta:.2f})", adjusted)):
        (n1, d1), (n2, d2) = sorted(logs.items())
        t = stats.ttest_ind(d2, d1, equal_var=True)
        half = t.confidence_interval(0.95)
        m = mean(d2) - mean(d1)
        ends = " ".join(f"N={n} {math.exp(mean(d)):.3f}" for n, d in ((n1, d1), (n2, d2)))
        print(
            f"bias in E({n2}) from the load generator, {name}: {math.exp(m):.3f} "
            f"[{math.exp(half.low):.3f}, {math.exp(half.high):.3f}] (hscale E over wrk E; "
            f"hscale / wrk {ends})"
        )


if __name__ == "__main__":
    main()
