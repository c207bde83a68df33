"""Every threshold the docs state (docs/validity.md, docs/analysis.md), tested at its
boundary: just inside passes, just outside is flagged, with the documented number."""

from __future__ import annotations

import numpy as np
import pytest

from hscale.analysis import usl, validity


def notes(**kw) -> list[str]:
    base = dict(
        requests=1000, failures=0, per_replica_requests={"r1": 500, "r2": 500},
        expected_replicas=["r1", "r2"], cpu_warnings=[], loadgen_cpu=0.2, oversubscribed=None,
    )  # fmt: skip
    return validity.validity_notes(**{**base, **kw})


def test_the_documented_numbers() -> None:
    assert validity.MAX_FAILURE_RATE == 0.01 and validity.MIN_FAIR_SHARE == 0.5
    assert (validity.MAX_DRIFT, validity.DRIFT_P) == (0.10, 0.01)
    assert validity.MAX_LITTLE_ERROR == 0.10 and validity.MIN_ACHIEVED == 0.95
    assert validity.LOADGEN_SATURATED_CPU == 0.9 and validity.HOST_SATURATED == 0.9


def test_failures_above_one_percent() -> None:
    assert notes(failures=10) == []  # exactly 1%
    assert notes(failures=11)[0].startswith("failures 1.1% > 1%")


def test_half_the_fair_share() -> None:
    assert notes(per_replica_requests={"r1": 750, "r2": 250}) == []  # exactly half of 500
    got = notes(per_replica_requests={"r1": 751, "r2": 249})
    assert got == ["replica(s) got less than 50% of their fair share of requests: r2 (50%)"]


def test_loadgen_at_90_percent_of_its_budget() -> None:
    assert notes(loadgen_cpu=0.899) == []
    assert notes(loadgen_cpu=0.9) == ["load generator saturated: 90% of its CPU budget"]


def test_host_at_90_percent_busy_with_the_ballast_not_counted() -> None:
    assert notes(host_busy_cores=1.79, host_cpus=2) == []
    assert notes(host_busy_cores=1.8, host_cpus=2)[0].startswith("host CPU saturated")


def test_littles_law_off_by_more_than_10_percent() -> None:
    def little(implied: float) -> dict:
        # as validity.littles_law records it: error_rel to 4 places
        return {"users": 10, "implied_users": implied, "error_rel": round(implied / 10 - 1, 4)}

    assert notes(littles_law=little(11.0)) == [] and notes(littles_law=little(9.0)) == []
    assert notes(littles_law=little(11.01))[0].startswith("Little's law off by +10%")
    assert notes(littles_law=little(8.99))[0].startswith("Little's law off by -10%")
    got = validity.littles_law(users=10, requests=1000, duration_s=10.0, mean_latency_ms=110.0)
    assert got["implied_users"] == 11.0 and got["error_rel"] == 0.1


def series(per_second: list[float]) -> list[dict]:
    return [{"t": t, "requests": r, "failures": 0} for t, r in enumerate(per_second)]


def test_drift_needs_both_more_than_10_percent_and_p_below_001() -> None:
    n = 10
    # a clean ramp: 9% over the window is not flagged, 11% is
    for change, flagged in ((0.09, False), (0.11, True)):
        ys = [1000 * (1 + change * (i / (n - 1) - 0.5)) for i in range(n)]
        d = validity.drift(series(ys), 0, n)
        assert d["change_rel"] == pytest.approx(change, abs=1e-3) and d["flagged"] is flagged
    # a large change that noise explains (p >= 0.01) is not flagged either
    rng = np.random.default_rng(1)
    noisy = [1000 * (1 + 0.15 * (i / (n - 1) - 0.5)) + rng.normal(0, 200) for i in range(n)]
    d = validity.drift(series(noisy), 0, n)
    assert abs(d["change_rel"]) > 0.10 and d["p_value"] >= 0.01 and not d["flagged"]
    assert validity.drift(series([100.0] * 4), 0, 4) is None  # below 5 whole seconds


def test_open_loop_below_95_percent_of_the_offered_rate() -> None:
    ok = {"achieved_ratio": 0.95, "achieved_rps": 95, "offered_rps": 100}
    assert validity.open_loop_warnings(ok) == []
    low = {**ok, "achieved_ratio": 0.949, "achieved_rps": 94.9, "late_sends": 3}
    assert validity.open_loop_warnings(low)[0].startswith("offered rate not sustained")


def test_a_fit_on_fewer_than_6_distinct_n_is_weak() -> None:
    def fit(ns: list[int]):
        n = np.array([m for m in ns for _ in range(2)], dtype=float)
        x = 100 * n / (1 + 0.05 * (n - 1)) * np.tile([0.99, 1.01], len(ns))
        return usl.fit(n, x, bootstrap=False)

    assert "only 5 distinct N (fewer than 6)" in (fit([1, 2, 3, 4, 5]).weak_fit or "")
    assert usl.MIN_DISTINCT_N == 6
    assert "distinct N" not in (fit([1, 2, 3, 4, 5, 6]).weak_fit or "")


def test_a_bottleneck_below_70_percent_is_called_waiting_not_cpu():
    from hscale.analysis.verdict import _bottleneck_part

    def point(util: float) -> list[dict]:
        b = {"component": "replicas", "kind": "replica", "util_of_budget": util}
        return [{"replicas": 4, "bottleneck": b}]

    assert "No component is near its CPU budget" in _bottleneck_part({}, point(0.69))
    assert "a lock, I/O or a call" in _bottleneck_part({}, point(0.41))
    assert _bottleneck_part({}, point(0.70)).startswith("The bottleneck at N = 4 is replicas")
