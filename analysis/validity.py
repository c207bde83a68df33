"""Whether a measured point can be trusted, and why not."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from scipy import stats as sps

MAX_FAILURE_RATE = 0.01
# A replica with less than this share of an even split is not really in the pool.
MIN_FAIR_SHARE = 0.5
# Throughput changing by more than this over the window (and a slope unlikely to be
# noise) means the system was not in steady state.
MAX_DRIFT, DRIFT_P = 0.10, 0.01
# Closed loop, no think time: users = X x R. Further off than this, users were waiting
# somewhere other than on the system (the load generator, or users not all running).
MAX_LITTLE_ERROR = 0.10
# Open loop: below this share of the offered rate, the rate was not sustained.
MIN_ACHIEVED = 0.95
# One Locust process uses at most one core; near its budget (a core per process that
# generates load), the generator limits throughput. Compared with util_of_budget.
LOADGEN_SATURATED_CPU = 0.9
# Beyond this share of the host's CPUs busy, components wait for a core: budgets are not met.
HOST_SATURATED = 0.9


def validity_notes(
    *,
    requests: int,
    failures: int,
    per_replica_requests: Mapping[str, int],
    expected_replicas: Sequence[str],
    cpu_warnings: Sequence[float],
    loadgen_cpu: float | None,
    oversubscribed: str | None,
    host_busy_cores: float | None = None,
    host_cpus: int | None = None,
    host_part: str = "host CPU",
    drift: Mapping | None = None,
    littles_law: Mapping | None = None,
) -> list[str]:
    """Reasons the point is not valid; an empty list means valid."""
    notes = []
    if requests == 0:
        return ["no requests completed in the measurement window"]
    if cpu_warnings:
        notes.append(
            f"load generator saturated: Locust cpu_warning {len(cpu_warnings)}x "
            f"(max {max(cpu_warnings):.0f}% CPU)"
        )
    elif loadgen_cpu is not None and loadgen_cpu >= LOADGEN_SATURATED_CPU:
        notes.append(f"load generator saturated: {loadgen_cpu:.0%} of its CPU budget")
    rate = failures / requests
    if rate > MAX_FAILURE_RATE:
        notes.append(f"failures {rate:.1%} > {MAX_FAILURE_RATE:.0%} ({failures} of {requests})")
    idle = [r for r in expected_replicas if per_replica_requests.get(r, 0) == 0]
    fair = requests / len(expected_replicas) if expected_replicas else 0
    starved = [
        f"{r} ({per_replica_requests[r] / fair:.0%})"
        for r in expected_replicas
        if r not in idle and per_replica_requests[r] < MIN_FAIR_SHARE * fair
    ]
    if idle:
        notes.append(f"replica(s) received no traffic: {', '.join(idle)}")
    if starved:
        notes.append(
            f"replica(s) got less than {MIN_FAIR_SHARE:.0%} of their fair share of requests: "
            + ", ".join(starved)
        )
    stray = sorted(set(per_replica_requests) - set(expected_replicas))
    if stray:
        notes.append(f"traffic from unexpected replica(s): {', '.join(stray)}")
    if oversubscribed:
        notes.append(f"oversubscribed: {oversubscribed}")
    elif (
        host_busy_cores is not None and host_cpus and host_busy_cores >= HOST_SATURATED * host_cpus
    ):
        notes.append(
            f"{host_part} saturated: {host_busy_cores:.2f} of {host_cpus} cores busy, so "
            "components could not all get their CPU (is something else running?)"
        )
    if drift and drift.get("flagged"):
        notes.append(
            f"not steady: throughput drifted {drift['change_rel']:+.0%} over the measurement "
            "window (lengthen WARMUP, or find what changes during the run)"
        )
    if littles_law and littles_law.get("error_rel") is not None:
        err = littles_law["error_rel"]
        if abs(err) > MAX_LITTLE_ERROR:
            notes.append(
                f"Little's law off by {err:+.0%}: {littles_law['users']} users but X x R = "
                f"{littles_law['implied_users']:.1f} busy on average, so users waited outside "
                "the system (load generator too slow?)"
            )
    return notes


def drift(series: Sequence[Mapping], warmup_s: float, duration_s: float) -> dict | None:
    """Trend of successful requests per second over the whole seconds of the window.

    change_rel is the fitted change from the first to the last second relative to the
    mean; flagged when it exceeds MAX_DRIFT and the slope is unlikely to be noise.
    """
    start, end = math.ceil(warmup_s), math.floor(warmup_s + duration_s)
    ys = [r["requests"] - r["failures"] for r in series if start <= r["t"] < end]
    if len(ys) < 5 or sum(ys) == 0:
        return None
    fit = sps.linregress(range(len(ys)), ys)
    level = sum(ys) / len(ys)
    change = fit.slope * (len(ys) - 1) / level
    p = float(fit.pvalue) if math.isfinite(fit.pvalue) else 1.0
    return {
        "seconds": len(ys),
        "slope_rel_per_s": round(fit.slope / level, 5),
        "change_rel": round(change, 4),
        "p_value": round(p, 5),
        "flagged": bool(abs(change) > MAX_DRIFT and p < DRIFT_P),  # numpy bools are not JSON
    }


def littles_law(
    users: int, requests: int, duration_s: float, mean_latency_ms: float | None
) -> dict | None:
    """Closed loop without think time: the users should equal X x R (every response,
    failures too, since each occupied a user)."""
    if not requests or not duration_s or mean_latency_ms is None:
        return None
    x = requests / duration_s
    implied = x * mean_latency_ms / 1000
    return {
        "users": users,
        "throughput_rps": round(x, 2),
        "mean_latency_ms": mean_latency_ms,
        "implied_users": round(implied, 2),
        "error_rel": round(implied / users - 1, 4),
    }


def open_loop_warnings(open_loop: Mapping | None) -> list[str]:
    """Open loop: a rate not sustained is a finding about the system, not a bad
    measurement (latency is timed from the intended send, so it shows the queueing)."""
    if not open_loop or open_loop["achieved_ratio"] >= MIN_ACHIEVED:
        return []
    return [
        f"offered rate not sustained: achieved {open_loop['achieved_rps']:.0f} of "
        f"{open_loop['offered_rps']:g} req/s ({open_loop['achieved_ratio']:.0%}); "
        f"{open_loop.get('late_sends', 0)} sends were late: saturated, or too few USERS"
    ]
