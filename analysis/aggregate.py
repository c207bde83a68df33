"""From trials to points: one summary per N over its trials, with CIs and the bottleneck.

The unit of a CI is one trial's throughput (per-second samples within a trial are
autocorrelated); latency merges every trial's HdrHistogram exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from statistics import mean

from hscale.analysis import latency, precision, scaling, stats
from hscale.analysis.analyze import efficiency_by_n, trial_throughput

# Components with no CPU quota of their own are judged against one core: the store
# (Redis) and nginx (worker_processes 1) each run their work on one thread.
SINGLE_THREAD_CPUS = 1.0
NOT_A_BOTTLENECK = {"overhead"}


def demand_ms(cpu_cores: float, throughput_rps: float) -> float | None:
    """Service demand D = U / X: CPU milliseconds per successful request."""
    return round(cpu_cores / throughput_rps * 1000, 4) if throughput_rps > 0 else None


def with_demand(components: Mapping[str, dict], throughput_rps: float) -> dict[str, dict]:
    return {
        name: {**c, "demand_ms": demand_ms(c["cpu_cores"], throughput_rps)}
        for name, c in components.items()
    }


def merge_histograms(encoded: Sequence[str | None]) -> str | None:
    present = [e for e in encoded if e]
    if not present:
        return None
    total = latency.decode(present[0])
    for e in present[1:]:
        total.add(latency.decode(e))
    return latency.encode(total)


def _mean_components(trials: Sequence[dict], throughput_rps: float) -> dict[str, dict]:
    """Per component: mean cores and utilisation over the trials that measured it. The
    replicas become one component, "replicas": their names change between trials (a
    container made anew gets a new hostname), their sum does not."""
    by_name: dict[str, list[dict]] = defaultdict(list)
    for t in trials:
        for name, c in replicas_as_one(t["components"]).items():
            by_name[name].append(c)
    out = {}
    for name, cs in sorted(by_name.items()):
        cores = mean(c["cpu_cores"] for c in cs)
        utils = [c["util_of_budget"] for c in cs if c.get("util_of_budget") is not None]
        out[name] = {
            "kind": cs[0]["kind"],
            "cpu_cores": round(cores, 4),
            "budget_cpus": cs[0]["budget_cpus"],
            "util_of_budget": round(mean(utils), 4) if utils else None,
            "demand_ms": demand_ms(cores, throughput_rps),
        }
    return out


def replicas_as_one(components: Mapping[str, dict]) -> dict[str, dict]:
    """Components with the replicas summed into one entry, "replicas"."""
    out = {name: c for name, c in components.items() if c["kind"] != "replica"}
    reps = [c for c in components.values() if c["kind"] == "replica"]
    if reps:
        cores = sum(c["cpu_cores"] for c in reps)
        budgets = [c["budget_cpus"] for c in reps]
        budget = None if None in budgets else sum(budgets)
        out["replicas"] = {
            "kind": "replica",
            "cpu_cores": cores,
            "budget_cpus": budget,
            "util_of_budget": cores / budget if budget else None,
        }
    return out


def bottleneck(components: Mapping[str, dict], throughput_rps: float) -> dict | None:
    """The component nearest saturation: highest CPU use against its budget.

    Replicas count as one component (their mean): they share the load evenly, so the
    group saturates together. Components without a budget are judged against one core.
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for name, c in components.items():
        if c["kind"] not in NOT_A_BOTTLENECK:
            groups["replicas" if c["kind"] == "replica" else name].append(c)
    best = None
    for name, cs in groups.items():
        cores = sum(c["cpu_cores"] for c in cs)
        budget = sum(c["budget_cpus"] or SINGLE_THREAD_CPUS for c in cs)
        row = {
            "component": name,
            "kind": cs[0]["kind"],
            "cpu_cores": round(cores, 4),
            "budget_cpus": round(budget, 4),
            "budget_assumed": any(c["budget_cpus"] is None for c in cs),
            "util_of_budget": round(cores / budget, 4),
            "demand_ms": demand_ms(cores, throughput_rps),
        }
        if best is None or row["util_of_budget"] > best["util_of_budget"]:
            best = row
    return best


def _point(
    n: int,
    trials: Sequence[dict],
    histograms: Mapping[tuple[int, int], str | None],
    noise: tuple[float, int] | None,
):
    xs = [trial_throughput(t) for t in trials]
    raw = [t["throughput_rps"] for t in trials]
    x = mean(xs)
    requests = sum(t["requests"] for t in trials)
    failures = sum(t["failures"] for t in trials)
    per_replica: dict[str, int] = defaultdict(int)
    for t in trials:
        for r, k in t["per_replica_requests"].items():
            per_replica[r] += k
    comps = _mean_components(trials, x)
    ci = None if noise is None else precision.mean_ci(xs, *noise)
    lat = latency.percentiles_ms(
        merge_histograms([histograms.get((n, t["trial"])) for t in trials])
    )
    return {
        "replicas": n,
        "trials": len(trials),
        "valid_trials": sum(1 for t in trials if t["valid"]),
        "users": trials[0]["users"],
        "throughput_rps": round(x, 2),
        "throughput_trials": [round(v, 2) for v in xs],
        "throughput_ci": None if ci is None else [round(ci[0], 2), round(ci[1], 2)],
        "throughput_ci_half": None if ci is None else round((ci[1] - ci[0]) / 2 / x, 4),
        "throughput_cv": None if (cv := stats.cv(xs)) is None else round(cv, 4),
        "throughput_raw_rps": round(mean(raw), 2),
        "throughput_raw_trials": raw,
        "host_speed_trials": [t.get("host_speed") for t in trials],
        "requests": requests,
        "failures": failures,
        "failure_rate": round(failures / requests, 5) if requests else None,
        "latency_ms": lat,
        "throttling": _throttling(trials, lat),
        "per_replica_requests": dict(sorted(per_replica.items())),
        "components": comps,
        "bottleneck": bottleneck(comps, x),
        "valid": all(t["valid"] for t in trials),
        "notes": [f"trial {t['trial']}: {note}" for t in trials for note in t["notes"]],
        "warnings": [f"trial {t['trial']}: {w}" for t in trials for w in t.get("warnings", [])],
    }


def _throttling(trials: Sequence[dict], lat: dict) -> dict | None:
    """The trials' CFS throttling as one record, with the percentiles of the merged
    latency that the quota's stall dominates."""
    found = [t["throttling"] for t in trials if t.get("throttling")]
    shares = [f["throttled_period_share"] for f in found if f["throttled_period_share"] is not None]
    if not found:
        return None
    share = round(mean(shares), 4) if shares else None
    stall = found[0]["stall_ms"]
    return {
        "period_us": found[0]["period_us"],
        "throttled_period_share": share,
        "stall_ms": stall,
        "dominated_percentiles": latency.throttle_dominated(lat, stall, share),
    }


def points(
    trials: Sequence[dict],
    histograms: Mapping[tuple[int, int], str | None],
    scaling_of_throughput: bool = True,
    fitted: int = 0,
) -> list[dict]:
    """One point per N (sorted), with speedup and efficiency against the baseline N.

    histograms maps (N, trial) to that trial's encoded HdrHistogram. Throughputs are the
    speed-adjusted ones where the run adjusted them (`fitted` = 1: the slope was fitted),
    and every CI uses the trials' noise pooled over N (precision.py).
    """
    by_n: dict[int, list[dict]] = defaultdict(list)
    for t in trials:
        by_n[t["replicas"]].append(t)
    noise = precision.pooled_cv(
        {n: [trial_throughput(t) for t in ts] for n, ts in by_n.items()}, fitted
    )
    rows = [
        _point(n, sorted(ts, key=lambda t: t["trial"]), histograms, noise) for n, ts in by_n.items()
    ]
    rows.sort(key=lambda p: p["replicas"])
    # Open loop, throughput is the offered rate at every N: a speedup of it means nothing.
    if not scaling_of_throughput:
        keys = ("speedup", "speedup_ci", "efficiency", "efficiency_ci", "karp_flatt")
        return [{**p, **dict.fromkeys(keys)} for p in rows]
    return with_scaling(rows, fitted)


def with_scaling(rows: list[dict], fitted: int = 0) -> list[dict]:
    """Speedup S(N), efficiency E(N) with 95% CIs (log-normal, from the trials' noise
    pooled over N: precision.py) and the Karp-Flatt serial fraction, against the smallest
    valid N's per-replica throughput: the same computation as the analysis."""
    base = scaling.baseline_per_replica(rows)
    if base is None:
        return rows
    eff, eff_ci, kf = efficiency_by_n(
        {p["replicas"]: p["throughput_trials"] for p in rows}, base=base[0], fitted=fitted
    )
    out = []
    for p in rows:
        n, key = p["replicas"], str(p["replicas"])
        e, ci = eff[key], eff_ci[key]
        out.append(
            {
                **p,
                "speedup": None if e is None else round(e * n, 3),
                "speedup_ci": None if ci is None else [round(ci[0] * n, 3), round(ci[1] * n, 3)],
                "efficiency": None if e is None else round(e, 3),
                "efficiency_ci": None if ci is None else [round(ci[0], 3), round(ci[1], 3)],
                "karp_flatt": None if (k_f := kf[key]) is None else round(k_f, 4),
                "warnings": p["warnings"] + scaling.efficiency_notes(e),
            }
        )
    return out
