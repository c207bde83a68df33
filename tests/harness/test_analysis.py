"""analysis/: speedup and efficiency, validity reasons, exact latency, CPU per component."""

from __future__ import annotations

import base64
import random

import hscale_tally
import pytest
from hdrh.histogram import HdrHistogram

from hscale import settings
from hscale.analysis import aggregate, components, latency, scaling, validity
from hscale.cgroups import CpuCounters
from hscale.trial import oversubscription

# -- scaling -----------------------------------------------------------------------------


def pt(n: int, rps: float, valid: bool = True) -> dict:
    return {
        "replicas": n,
        "throughput_rps": rps,
        "throughput_trials": [rps],
        "valid": valid,
        "warnings": [],
    }


def speedups(points: list[dict]) -> list[tuple[float | None, float | None]]:
    return [(p.get("speedup"), p.get("efficiency")) for p in aggregate.with_scaling(points)]


def test_speedup_and_efficiency_against_n1():
    points = [pt(1, 100.0), pt(2, 190.0), pt(4, 360.0)]
    got = speedups(points)
    assert [s for s, _ in got] == pytest.approx([1.0, 1.9, 3.6])
    assert [e for _, e in got] == pytest.approx([1.0, 0.95, 0.9])
    assert scaling.baseline_per_replica(points) == (1, 100.0)


def test_sweep_without_n1_takes_smallest_n_as_perfectly_efficient():
    points = [pt(2, 200.0), pt(4, 360.0), pt(8, 600.0)]
    assert scaling.baseline_per_replica(points) == (2, 100.0)
    got = speedups(points)
    assert [s for s, _ in got] == pytest.approx([2.0, 3.6, 6.0])
    assert [e for _, e in got] == pytest.approx([1.0, 0.9, 0.75])


def test_invalid_smallest_point_is_not_the_baseline():
    points = [pt(1, 50.0, valid=False), pt(2, 200.0), pt(3, 270.0)]
    assert scaling.baseline_per_replica(points) == (2, 100.0)
    got = speedups(points)
    assert got[0] == pytest.approx((0.5, 0.5))
    assert got[1] == pytest.approx((2.0, 1.0))
    assert got[2] == pytest.approx((2.7, 0.9))


def test_all_invalid_still_gives_a_baseline_but_zero_throughput_does_not():
    points = [pt(1, 0.0, valid=False), pt(2, 120.0, valid=False)]
    assert scaling.baseline_per_replica(points) == (2, 60.0)
    assert speedups([pt(1, 0.0), pt(2, 0.0)]) == [(None, None), (None, None)]
    assert aggregate.with_scaling([]) == []


def test_superlinear_note_above_threshold_only():
    assert scaling.efficiency_notes(None) == []
    assert scaling.efficiency_notes(0.7) == []
    assert scaling.efficiency_notes(1.0) == []
    assert scaling.efficiency_notes(scaling.SUPERLINEAR) == []
    notes = scaling.efficiency_notes(1.3)
    assert len(notes) == 1 and "superlinear" in notes[0] and "1.30" in notes[0]


# -- validity ----------------------------------------------------------------------------


def notes(**over) -> list[str]:
    kw = {
        "requests": 1000,
        "failures": 0,
        "per_replica_requests": {"replica-1": 500, "replica-2": 500},
        "expected_replicas": ["replica-1", "replica-2"],
        "cpu_warnings": [],
        "loadgen_cpu": 0.4,
        "oversubscribed": None,
        "host_busy_cores": 1.0,
        "host_cpus": 4,
    }
    return validity.validity_notes(**{**kw, **over})


def test_valid_point_has_no_notes():
    assert notes() == []
    assert notes(loadgen_cpu=None, host_busy_cores=None, host_cpus=None) == []


def test_zero_requests_is_the_only_reason_given():
    got = notes(requests=0, per_replica_requests={}, cpu_warnings=[99.0], oversubscribed="x")
    assert got == ["no requests completed in the measurement window"]


def test_loadgen_cpu_warnings():
    got = notes(cpu_warnings=[91.0, 97.0])
    assert len(got) == 1 and "load generator saturated" in got[0] and "2x" in got[0]
    assert "97%" in got[0]


def test_loadgen_cpu_measured_near_its_core():
    assert notes(loadgen_cpu=validity.LOADGEN_SATURATED_CPU - 0.01) == []
    got = notes(loadgen_cpu=0.95)
    assert len(got) == 1 and "load generator saturated" in got[0]
    # a cpu_warning and a high reading are one reason, reported once
    assert len(notes(loadgen_cpu=0.95, cpu_warnings=[95.0])) == 1


def test_failures_above_one_percent():
    assert notes(failures=10) == []  # exactly 1%: allowed
    got = notes(failures=11)
    assert len(got) == 1 and got[0].startswith("failures 1.1%") and "11 of 1000" in got[0]
    assert len(notes(failures=1000)) == 1


def test_idle_replica():
    got = notes(per_replica_requests={"replica-1": 1000})
    assert got == ["replica(s) received no traffic: replica-2"]
    got = notes(per_replica_requests={"replica-1": 1000, "replica-2": 0})
    assert got == ["replica(s) received no traffic: replica-2"]


def test_stray_replica():
    got = notes(per_replica_requests={"replica-1": 400, "replica-2": 500, "replica-3": 100})
    assert got == ["traffic from unexpected replica(s): replica-3"]


def test_oversubscribed():
    got = notes(oversubscribed="3 x 1 CPU + 1 reserved > 2 host CPUs")
    assert got == ["oversubscribed: 3 x 1 CPU + 1 reserved > 2 host CPUs"]


def test_host_saturated():
    limit = validity.HOST_SATURATED * 4
    assert notes(host_busy_cores=limit - 0.01) == []
    got = notes(host_busy_cores=limit)
    assert len(got) == 1 and "host CPU saturated" in got[0]
    # oversubscription already explains a busy host: one reason, not two
    assert len(notes(host_busy_cores=4.0, oversubscribed="too many")) == 1


def test_several_reasons_together():
    got = notes(
        failures=50,
        per_replica_requests={"replica-1": 1000, "replica-9": 1},
        cpu_warnings=[99.0],
        oversubscribed="too many",
    )
    assert len(got) == 5
    for word in ("load generator", "failures", "no traffic", "unexpected", "oversubscribed"):
        assert any(word in n for n in got), (word, got)


def test_oversubscription_reason_from_settings():
    s = settings.load(
        {"REPLICA_CPUS": "0.5", "REPLICAS": "3", "PORT": "18080", "APP_PORT": "18101"},
        host_cpus=2,
    )
    assert oversubscription(s, 2, "cgroup-v1") is None
    assert "host CPUs" in oversubscription(s, 3, "cgroup-v1")
    assert "no per-replica CPU limit" in oversubscription(s, 1, "none")


# -- latency -----------------------------------------------------------------------------


def listener_histogram_args() -> tuple[int, int, int]:
    """(lowest, highest, significant digits) exactly as the listener's tally has them."""
    return hscale_tally.LOWEST_US, hscale_tally.HIGHEST_US, hscale_tally.SIG_DIGITS


def encoded(ms_values: list[float]) -> str:
    """A histogram of response times as the listener records and ships it."""
    lo, hi, digits = listener_histogram_args()
    hist = HdrHistogram(lo, hi, digits)
    for ms in ms_values:
        hist.record_value(max(lo, min(hi, int(ms * 1000))))
    return base64.b64encode(hist.encode()).decode()


def test_percentiles_of_a_uniform_distribution():
    got = latency.percentiles_ms(encoded([float(i) for i in range(1, 1001)]))  # 1..1000 ms
    rel = 2e-3  # 3 significant digits
    assert got["p50"] == pytest.approx(500, rel=rel)
    assert got["p90"] == pytest.approx(900, rel=rel)
    assert got["p95"] == pytest.approx(950, rel=rel)
    assert got["p99"] == pytest.approx(990, rel=rel)
    assert got["p99_9"] == pytest.approx(999, rel=rel)
    assert got["max"] == pytest.approx(1000, rel=rel)
    assert got["mean"] == pytest.approx(500.5, rel=rel)
    assert set(got) == {"p50", "p90", "p95", "p99", "p99_9", "max", "mean"}


def test_percentiles_see_a_rare_slow_tail():
    got = latency.percentiles_ms(encoded([2.0] * 990 + [500.0] * 10))
    assert got["p50"] == pytest.approx(2.0, rel=2e-3)
    assert got["p99"] == pytest.approx(2.0, rel=2e-3)  # the 990th of 1000 is still fast
    assert got["p99_9"] == pytest.approx(500, rel=2e-3)
    assert got["max"] == pytest.approx(500, rel=2e-3)
    assert got["mean"] == pytest.approx((990 * 2 + 10 * 500) / 1000, rel=2e-3)


def test_sub_millisecond_resolution():
    got = latency.percentiles_ms(encoded([0.25] * 100))
    assert got["p50"] == pytest.approx(0.25, rel=2e-3) and got["max"] == pytest.approx(0.25, 2e-3)


def test_percentiles_are_ordered_and_max_bounds_them():
    rng = random.Random(7)
    values = [rng.lognormvariate(1.0, 1.2) for _ in range(20_000)]
    got = latency.percentiles_ms(encoded(values))
    order = [got[k] for k in ("p50", "p90", "p95", "p99", "p99_9", "max")]
    assert order == sorted(order)
    assert got["max"] >= got["p99"] >= got["p50"] > 0
    assert got["max"] == pytest.approx(max(values), rel=2e-3)
    exact_p99 = sorted(values)[int(0.99 * len(values)) - 1]
    assert got["p99"] == pytest.approx(exact_p99, rel=5e-3)


def test_no_histogram_gives_nulls():
    assert latency.percentiles_ms(None) == dict.fromkeys(
        ["p50", "p90", "p95", "p99", "p99_9", "max", "mean"]
    )
    assert latency.percentiles_ms("") == latency.percentiles_ms(None)


# -- CPU per component ---------------------------------------------------------------------


def test_cpu_usage_from_cgroup_counters():
    start = {
        "replica-1": CpuCounters(cpu_s=10.0, nr_periods=100, nr_throttled=10, throttled_s=1.0),
        "nginx": CpuCounters(cpu_s=3.0),
        "gone": CpuCounters(cpu_s=1.0),  # stopped before the end: no usable reading
    }
    end = {
        "replica-1": CpuCounters(cpu_s=12.0, nr_periods=140, nr_throttled=30, throttled_s=1.8),
        "nginx": CpuCounters(cpu_s=3.4),
        "new": CpuCounters(cpu_s=5.0),  # started after the start reading
    }
    got = components.cpu_usage(
        start,
        end,
        4.0,
        {"replica-1": 0.5, "nginx": None},
        {"replica-1": "replica", "nginx": "proxy"},
    )
    assert set(got) == {"replica-1", "nginx"}
    r = got["replica-1"]
    assert r == {
        "kind": "replica",
        "cpu_cores": 0.5,
        "budget_cpus": 0.5,
        "util_of_budget": 1.0,
        "throttled_periods": 0.5,
        "throttled_s": 0.8,
    }
    n = got["nginx"]
    assert n["kind"] == "proxy" and n["cpu_cores"] == pytest.approx(0.1)
    assert n["budget_cpus"] is None and n["util_of_budget"] is None
    assert n["throttled_periods"] is None and n["throttled_s"] == 0.0


def test_cpu_usage_unknown_kind_and_empty_window():
    got = components.cpu_usage(
        {"x": CpuCounters(cpu_s=1.0)}, {"x": CpuCounters(cpu_s=2.0)}, 0.0, {}, {}
    )
    assert got["x"]["kind"] == "other" and got["x"]["cpu_cores"] == 0.0
    assert components.cpu_usage({}, {"x": CpuCounters(cpu_s=2.0)}, 1.0, {}, {}) == {}
