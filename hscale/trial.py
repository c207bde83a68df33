"""One trial's record: throughput, latency, CPU per component, throttling and validity,
from the load generator's tally and the CPU counters read around its window."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psutil

from hscale import loadgen
from hscale.analysis import aggregate, components, latency, validity
from hscale.ballast import Ballast
from hscale.cgroups import CpuCounters
from hscale.runtimes.base import Runtime
from hscale.settings import RESERVED_CPUS, Settings


@dataclass(frozen=True)
class Stage:
    """What a trial's record needs from the sweep around it."""

    s: Settings
    runtime: Runtime
    limits: str  # the run's cpu_limits (cgroup-v2, docker-cpus, none, ...)
    run_root: Path  # raw paths are recorded relative to it


def oversubscription(s: Settings, n: int, limits: str) -> str | None:
    if limits == "none":
        return "no per-replica CPU limit could be set, so the replicas share the host's CPUs"
    if not s.fits_host(n):
        return (
            f"{n} x {s.replica_cpus:g} CPU + {RESERVED_CPUS:g} reserved for nginx, store and "
            f"load generator > {s.host_cpus} host CPUs"
        )
    return None


def host_counters(ballast: Ballast, probe_cpu_s: float = 0.0) -> dict[str, CpuCounters]:
    """Whole-host busy CPU, and the share of it of hscale's own loops, the ballast and
    the speed probe (to be subtracted)."""
    t = psutil.cpu_times()
    # guest time is already inside user; steal is time the hypervisor kept from us.
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return {
        "host": CpuCounters(cpu_s=busy),
        "ballast": CpuCounters(cpu_s=ballast.cpu_seconds() + probe_cpu_s),
    }


def throttling(comps: dict[str, dict], s: Settings, lat: dict) -> dict:
    """How much the replicas' CFS quota shows in the trial: the share of periods that
    ended throttled (mean over replicas), the stall one such period adds, and the latency
    percentiles that stall dominates (analysis/latency.py)."""
    shares = [
        c["throttled_periods"]
        for c in comps.values()
        if c["kind"] == "replica" and c.get("throttled_periods") is not None
    ]
    share = round(sum(shares) / len(shares), 4) if shares else None
    stall = latency.throttle_stall_ms(s.replica_cpus, s.cpu_period_us)
    return {
        "period_us": s.cpu_period_us,
        "throttled_period_share": share,
        "stall_ms": round(stall, 2),
        "dominated_percentiles": latency.throttle_dominated(lat, stall, share),
    }


def make_trial(
    stage: Stage,
    n: int,
    trial: int,
    seq: int,
    plan: loadgen.LocustPlan,
    run: loadgen.LoadRun,
    out: Path,
    host_speed: float | None = None,
) -> dict:
    """One trial's record from the raw tally and CPU counters."""
    s, runtime, limits, run_root = stage.s, stage.runtime, stage.limits, stage.run_root
    tally = run.tally
    seconds = tally["duration_s"]
    comps = runtime.components()
    # Its quota, else one core per Locust process that generates load (the master of
    # workers only merges).
    loadgen_budget = s.loadgen_cpus or float(max(1, plan.workers))
    budgets = {c.name: c.budget_cpus for c in comps} | {"loadgen": loadgen_budget}
    kinds = {c.name: c.kind for c in comps} | {"loadgen": "loadgen"}
    cpu = components.cpu_usage(run.counters_start, run.counters_end, seconds, budgets, kinds)
    host, ballast = cpu.pop("host", None), cpu.pop("ballast", None)
    busy = host["cpu_cores"] - (ballast["cpu_cores"] if ballast else 0.0) if host else None
    busy_cpus, part = s.host_cpus, "host CPU"
    split = runtime.replica_cpuset
    if split and busy is not None:  # the replicas' CPUs are full by design: judge the rest
        busy -= sum(c["cpu_cores"] or 0.0 for c in cpu.values() if c["kind"] == "replica")
        busy_cpus, part = s.host_cpus - len(split), "the CPUs beside the replicas"
    requests, failures = tally["requests"], tally["failures"]
    throughput = (requests - failures) / seconds if seconds > 0 else 0.0
    lat = latency.percentiles_ms(tally["histogram"])
    over = oversubscription(s, n, limits)
    drift = validity.drift(tally["series"], tally["warmup_s"], seconds)
    little = (
        validity.littles_law(plan.users, requests, seconds, lat["mean"])
        if plan.load == "closed"
        else None
    )
    open_loop = None
    if plan.load == "rate" and plan.rate:
        achieved = requests / seconds if seconds > 0 else 0.0
        open_loop = {
            **(tally.get("open_loop") or {}),
            "offered_rps": plan.rate,
            "achieved_rps": round(achieved, 2),
            "achieved_ratio": round(achieved / plan.rate, 4),
        }
    per_replica = by_replica(tally["per_replica_requests"], runtime.upstreams())
    notes = validity.validity_notes(
        requests=requests,
        failures=failures,
        per_replica_requests=per_replica,
        expected_replicas=runtime.replicas(),
        cpu_warnings=tally["cpu_warnings"],
        loadgen_cpu=cpu.get("loadgen", {}).get("util_of_budget"),
        oversubscribed=over,
        host_busy_cores=busy,
        host_cpus=busy_cpus,
        host_part=part,
        drift=drift,
        littles_law=little,
    )
    return {
        "replicas": n,
        "trial": trial,
        "seq": seq,
        "users": plan.users,
        "loadgen_workers": tally.get("workers", 0),
        "duration_s": round(seconds, 3),
        "warmup_s": round(tally["warmup_s"], 3),
        "throughput_rps": round(throughput, 2),
        # Work per CPU-ms of the speed probe during the window (hscale/probe.py).
        "host_speed": host_speed,
        "requests": requests,
        "failures": failures,
        "failure_rate": round(failures / requests, 5) if requests else None,
        "latency_ms": lat,
        "throttling": throttling(cpu, s, lat),
        "per_replica_requests": dict(sorted(per_replica.items())),
        "components": aggregate.with_demand(cpu, throughput),
        **per_node(cpu, runtime.node_of()),
        "host": {"cpus": s.host_cpus, "busy_cores": None if busy is None else round(busy, 3)},
        "loadgen_cpu_warnings": tally["cpu_warnings"],
        "series": tally["series"],
        "drift": drift,
        "littles_law": little,
        "open_loop": open_loop,
        "oversubscribed": over is not None,
        "valid": not notes,
        "notes": notes,
        "warnings": validity.open_loop_warnings(open_loop),
        "errors": tally["errors"],
        "raw": str(out.relative_to(run_root)),
    }


def by_replica(per_upstream: dict[str, int], upstreams: dict[str, str]) -> dict[str, int]:
    """Requests per replica name, from nginx's X-Upstream addresses (an address no
    replica has keeps its own key, so the split check reports it as unexpected)."""
    out: dict[str, int] = {}
    for address, count in per_upstream.items():
        name = upstreams.get(address, address)
        out[name] = out.get(name, 0) + count
    return out


def stored_histogram(raw: Path) -> str | None:
    """The latency histogram a finished trial left in its tally.json."""
    return json.loads((raw / "tally.json").read_text()).get("histogram")


def per_node(cpu: dict[str, dict], nodes: dict[str, str]) -> dict[str, dict]:
    """Where the stack spans machines: each component's node, and each node's CPU."""
    if not nodes:
        return {}
    total: dict[str, float] = {}
    for name, node in nodes.items():
        if name in cpu:
            total[node] = total.get(node, 0.0) + cpu[name]["cpu_cores"]
    return {
        "nodes": dict(sorted(nodes.items())),
        "per_node_cpu": {node: round(cores, 4) for node, cores in sorted(total.items())},
    }
