"""Trials: their order, when to add more, per-N aggregation with CIs, validity per trial."""

from __future__ import annotations

import math
import random

import pytest
from hdrh.histogram import HdrHistogram
from scipy import stats

from hscale import settings
from hscale.analysis import aggregate, latency, validity
from hscale.schedule import (
    more_loadgen_workers,
    needs_more_trials,
    next_trial_cost,
    trial_order,
)

# -- planning ------------------------------------------------------------------------------


def test_trial_order_alternates_direction_and_covers_every_n_once_per_trial():
    order = trial_order((1, 2, 4), 3)
    assert order == [(1, 1), (2, 1), (4, 1), (4, 2), (2, 2), (1, 2), (1, 3), (2, 3), (4, 3)]
    assert trial_order((3,), 2) == [(3, 1), (3, 2)]


def point(n: int, x: float, ci: list[float] | None, trials: int) -> dict:
    return {"replicas": n, "throughput_rps": x, "throughput_ci": ci, "trials": trials}


def test_next_trial_cost_counts_resizes_apart():
    """The time budget's check before an added trial: a trial that resizes costs what the
    trials that resized cost, one that does not what those did; else the mean of all."""
    costs = [(False, 16.0), (True, 21.0), (False, 15.0), (True, 23.0)]
    assert next_trial_cost(costs, resizes=True) == pytest.approx(22.0)
    assert next_trial_cost(costs, resizes=False) == pytest.approx(15.5)
    assert next_trial_cost([(False, 16.0), (False, 18.0)], resizes=True) == pytest.approx(17.0)
    assert next_trial_cost([], resizes=False) == 0.0


def test_needs_more_trials_only_where_the_ci_is_wide_and_below_the_cap():
    points = [
        point(1, 100.0, [98.0, 102.0], 3),  # half-width 2%
        point(2, 200.0, [180.0, 220.0], 3),  # 10%
        point(3, 300.0, [250.0, 350.0], 10),  # wide but at the cap
        point(4, 400.0, None, 1),  # one trial: no CI yet
    ]
    assert needs_more_trials(points, 0.05, 10) == [2, 4]
    assert needs_more_trials(points, 0.0, 10) == []  # CI_TARGET off


def trial(n: int, notes: list[str], store_cores: float = 0.2) -> dict:
    return {
        "replicas": n,
        "notes": notes,
        "components": {
            "nginx": {"kind": "proxy", "cpu_cores": 0.3},
            "store": {"kind": "store", "cpu_cores": store_cores},
            "replica-1": {"kind": "replica", "cpu_cores": 0.5},
        },
    }


def cfg(host_cpus: int, replica_cpus: str) -> settings.Settings:
    return settings.load({"REPLICA_CPUS": replica_cpus}, host_cpus=host_cpus)


def test_more_loadgen_workers_only_when_saturated_and_a_core_is_spare():
    saturated = ["load generator saturated: 95% of its CPU budget"]
    # 8 CPUs: 2 x 1.0 replica + 0.5 nginx/store + 1 Locust leaves 4.5 spare.
    assert more_loadgen_workers(trial(2, saturated), cfg(8, "1"), 0) == 2
    assert more_loadgen_workers(trial(2, saturated), cfg(8, "1"), 2) == 3
    # 2 CPUs: 2 x 0.25 + 0.5 + 1 leaves 0: the trial stays invalid.
    assert more_loadgen_workers(trial(2, saturated), cfg(2, "0.25"), 0) is None
    assert more_loadgen_workers(trial(2, ["failures 2% > 1%"]), cfg(8, "1"), 0) is None


# -- validity per trial --------------------------------------------------------------------


def series(values: list[int], warmup: int = 3) -> list[dict]:
    rows = [{"t": t, "requests": 50, "failures": 0} for t in range(warmup)]
    rows += [{"t": warmup + i, "requests": v, "failures": 0} for i, v in enumerate(values)]
    return rows


def test_drift_flags_a_trend_but_not_noise():
    rng = random.Random(1)
    flat = [1000 + rng.randint(-30, 30) for _ in range(20)]
    d = validity.drift(series(flat), 3.0, 20.0)
    assert d["seconds"] == 20 and not d["flagged"] and abs(d["change_rel"]) < 0.05
    rising = [800 + 20 * i + rng.randint(-10, 10) for i in range(20)]
    d = validity.drift(series(rising), 3.0, 20.0)
    assert d["flagged"] and d["change_rel"] == pytest.approx(380 / 990, rel=0.1)
    assert validity.drift(series([100, 100]), 3.0, 2.0) is None  # too short to judge


def test_warmup_seconds_are_not_part_of_the_drift_window():
    # A slow warm-up (50/s) before a flat window must not read as a rising trend.
    d = validity.drift(series([1000] * 10, warmup=5), 5.0, 10.0)
    assert d["change_rel"] == 0 and not d["flagged"]


def test_littles_law_implied_users():
    got = validity.littles_law(users=32, requests=20_000, duration_s=10.0, mean_latency_ms=16.0)
    assert got["implied_users"] == pytest.approx(32.0) and got["error_rel"] == pytest.approx(0)
    low = validity.littles_law(users=32, requests=20_000, duration_s=10.0, mean_latency_ms=8.0)
    assert low["error_rel"] == pytest.approx(-0.5)
    assert validity.littles_law(32, 0, 10.0, None) is None


def notes(**over) -> list[str]:
    kw = {
        "requests": 1000,
        "failures": 0,
        "per_replica_requests": {"r1": 340, "r2": 330, "r3": 330},
        "expected_replicas": ["r1", "r2", "r3"],
        "cpu_warnings": [],
        "loadgen_cpu": 0.5,
        "oversubscribed": None,
    }
    return validity.validity_notes(**{**kw, **over})


def test_fair_share_drift_and_littles_law_invalidate():
    assert notes() == []
    starved = notes(per_replica_requests={"r1": 550, "r2": 300, "r3": 150})
    assert len(starved) == 1 and "fair share" in starved[0] and "r3 (45%)" in starved[0]
    assert notes(drift={"flagged": True, "change_rel": 0.2})[0].startswith("not steady: ")
    assert notes(drift={"flagged": False, "change_rel": 0.2}) == []
    little = {"users": 32, "implied_users": 20.0, "error_rel": -0.375}
    assert "Little's law off by -38%" in notes(littles_law=little)[0]
    assert notes(littles_law={**little, "error_rel": 0.05}) == []


def test_open_loop_shortfall_is_a_warning_not_an_invalid_point():
    ok = {"offered_rps": 500, "achieved_rps": 498.0, "achieved_ratio": 0.996, "late_sends": 0}
    assert validity.open_loop_warnings(ok) == []
    short = {**ok, "achieved_rps": 400.0, "achieved_ratio": 0.8, "late_sends": 900}
    (w,) = validity.open_loop_warnings(short)
    assert "achieved 400 of 500 req/s (80%)" in w
    assert validity.open_loop_warnings(None) == []


# -- aggregation ---------------------------------------------------------------------------


def hist(values_us: list[int]) -> str:
    h = HdrHistogram(1, 60_000_000, 3)
    for v in values_us:
        h.record_value(v)
    return latency.encode(h)


def a_trial(n: int, k: int, x: float, valid: bool = True, util: float = 0.9) -> dict:
    comps = {
        f"replica-{i}": {
            "kind": "replica",
            "cpu_cores": 0.25 * util,
            "budget_cpus": 0.25,
            "util_of_budget": util,
        }
        for i in range(1, n + 1)
    }
    comps["store"] = {"kind": "store", "cpu_cores": 0.3, "budget_cpus": None}
    comps["store"]["util_of_budget"] = None
    return {
        "replicas": n,
        "trial": k,
        "users": 16 * n,
        "throughput_rps": x,
        "requests": int(x * 10),
        "failures": 0,
        "per_replica_requests": {f"replica-{i}": int(x * 10 / n) for i in range(1, n + 1)},
        "components": comps,
        "valid": valid,
        "notes": [] if valid else ["failures 2.0% > 1% (20 of 1000)"],
    }


def test_points_mean_ci_efficiency_and_exact_merged_latency():
    trials = [
        a_trial(1, 1, 100.0), a_trial(1, 2, 104.0), a_trial(1, 3, 96.0),
        a_trial(2, 1, 190.0), a_trial(2, 2, 194.0), a_trial(2, 3, 186.0, valid=False),
    ]  # fmt: skip
    hists = {(1, k): hist([1000 * k] * 10) for k in (1, 2, 3)}  # 1, 2, 3 ms
    hists |= {(2, k): hist([5000] * 10) for k in (1, 2, 3)}
    one, two = aggregate.points(trials, hists)
    assert one["trials"] == 3 and one["throughput_rps"] == 100.0
    assert one["throughput_trials"] == [100.0, 104.0, 96.0]
    # t interval with the relative spread pooled over both N: 2 + 2 df
    cv = math.sqrt((0.04**2 * 2 + (4 / 190) ** 2 * 2) / 4)
    half = stats.t.ppf(0.975, 4) * cv * 100.0 / math.sqrt(3)
    assert one["throughput_ci"] == pytest.approx([100.0 - half, 100.0 + half], abs=0.01)
    assert one["throughput_ci_half"] == pytest.approx(half / 100.0, abs=1e-4)
    assert one["throughput_cv"] == pytest.approx(0.04, abs=1e-4)
    # merged: 10 samples each of 1, 2 and 3 ms (3 significant digits)
    assert one["latency_ms"]["p50"] == 2.0
    assert one["latency_ms"]["max"] == pytest.approx(3.0, abs=0.002)
    assert one["efficiency"] == 1.0 and one["karp_flatt"] is None
    assert two["efficiency"] == pytest.approx(0.95, abs=1e-3)
    lo, hi = two["efficiency_ci"]
    assert lo < 0.95 < hi
    assert two["karp_flatt"] == pytest.approx((1 / 1.9 - 1 / 2) / (1 - 1 / 2), abs=1e-3)
    assert not two["valid"] and two["notes"] == ["trial 3: failures 2.0% > 1% (20 of 1000)"]
    assert two["per_replica_requests"] == {"replica-1": 2850, "replica-2": 2850}
    assert two["requests"] == 5700


def test_superlinear_efficiency_is_a_warning_on_the_point():
    trials = [a_trial(1, 1, 100.0), a_trial(2, 1, 260.0)]
    _, two = aggregate.points(trials, {})
    assert two["valid"] and any("superlinear" in w for w in two["warnings"])


def test_bottleneck_is_the_component_nearest_its_budget():
    comps = {
        "replica-1": {"kind": "replica", "cpu_cores": 0.2, "budget_cpus": 0.25},
        "replica-2": {"kind": "replica", "cpu_cores": 0.22, "budget_cpus": 0.25},
        "store": {"kind": "store", "cpu_cores": 0.97, "budget_cpus": None},
        "engine": {"kind": "overhead", "cpu_cores": 1.5, "budget_cpus": None},
    }
    b = aggregate.bottleneck(comps, 1000.0)
    assert b["component"] == "store" and b["util_of_budget"] == 0.97 and b["budget_assumed"]
    assert b["demand_ms"] == pytest.approx(0.97)
    comps["store"]["cpu_cores"] = 0.3
    b = aggregate.bottleneck(comps, 1000.0)
    assert b["component"] == "replicas" and b["util_of_budget"] == pytest.approx(0.84)
    assert b["cpu_cores"] == pytest.approx(0.42)


def test_open_loop_points_have_no_speedup():
    trials = [a_trial(1, 1, 300.0), a_trial(2, 1, 299.0)]
    for p in aggregate.points(trials, {}, scaling_of_throughput=False):
        assert p["efficiency"] is None and p["speedup"] is None and p["karp_flatt"] is None
        assert p["throughput_rps"] in (300.0, 299.0)


def test_point_components_sum_replicas_whose_names_change_between_trials():
    # docker: a replica container made anew between trials gets a new hostname
    one, two = a_trial(2, 1, 200.0), a_trial(2, 2, 200.0)
    two["components"] = {
        ("replica-9" if k == "replica-2" else k): v for k, v in two["components"].items()
    }
    (p,) = aggregate.points([one, two], {})
    reps = p["components"]["replicas"]
    assert [k for k in p["components"] if k.startswith("replica-")] == []
    assert reps["cpu_cores"] == pytest.approx(2 * 0.25 * 0.9)  # not 3 replicas' worth
    assert reps["budget_cpus"] == pytest.approx(0.5) and reps["util_of_budget"] == 0.9
    assert reps["demand_ms"] == pytest.approx(0.45 / 200 * 1000)


def test_a_point_with_some_valid_trials_is_still_the_baseline():
    trials = [a_trial(1, 1, 100.0), a_trial(1, 2, 110.0, valid=False), a_trial(2, 1, 190.0)]
    one, two = aggregate.points(trials, {})
    assert not one["valid"] and one["valid_trials"] == 1
    assert one["efficiency"] == 1.0 and two["efficiency"] == pytest.approx(190 / 2 / 105, 1e-3)
