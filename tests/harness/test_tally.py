"""The listener's tally (loadtests/hscale_tally.py), imported without Locust."""

from __future__ import annotations

import sys

import pytest
from hscale_tally import LATE_MS, LoadModel, Tally

from hscale.analysis import latency


def test_importing_the_tally_imports_no_locust() -> None:
    assert "locust" not in sys.modules or "hscale_listener" in sys.modules


def test_workers_reports_merge_into_exact_counts_and_histograms() -> None:
    master, a, b = Tally(), Tally(), Tally()
    for t in (master, a, b):
        t.reset("measure")
    for ms in range(1, 101):
        a.record(float(ms), "replica-1", None)
    for ms in range(101, 201):
        b.record(float(ms), "replica-2", "HTTPError 502" if ms % 50 == 0 else None)
    a.consistency.add("counter", "attempts")
    master.merge(a.take_report())
    master.merge(b.take_report())
    out = master.dump()
    assert out["requests"] == 200 and out["failures"] == 2
    assert out["per_replica_requests"] == {"replica-1": 100, "replica-2": 100}
    assert out["errors"] == {"HTTPError 502": 2}
    assert latency.percentiles_ms(out["histogram"])["p50"] == pytest.approx(100, rel=0.02)
    assert out["consistency"]["counter"]["attempts"] == 1
    assert a.requests == 0  # a report restarts the worker's counters


def test_a_report_from_the_warm_up_counts_only_in_the_series_and_consistency() -> None:
    master, late = Tally(), Tally()
    master.reset("measure")
    late.record(5.0, "replica-1", None)  # still in "warmup"
    late.consistency.add("kv", "writes")
    master.merge(late.take_report())
    out = master.dump()
    assert out["requests"] == 0 and sum(s["requests"] for s in out["series"]) == 1
    assert out["consistency"]["kv"]["writes"] == 1


def test_open_loop_sends_count_late_and_add_their_lag_to_the_latency() -> None:
    t = Tally()
    t.model = LoadModel(rate=100.0, users=10)
    t.record(2.0, "r", None, send_lag_ms=LATE_MS + 5)
    t.record(2.0, "r", None, send_lag_ms=1.0)
    ol = t.dump()["open_loop"]
    assert ol["intended_sends"] == 2 and ol["late_sends"] == 1 and ol["offered_rps"] == 100.0
    assert t.hist.get_max_value() >= 17_000  # 2 ms + 15 ms of lag, in microseconds
