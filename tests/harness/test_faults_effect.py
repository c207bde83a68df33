"""What a fault did, from a per-second series (analysis/faults.py): recovery, dip,
failures, latency and lost writes, on series made to show each case."""

from __future__ import annotations

from hscale.analysis import faults


def series(ok: list[int], failures: dict[int, int] | None = None, ms: float = 10.0) -> list[dict]:
    failures = failures or {}
    return [
        {"t": t, "requests": v + failures.get(t, 0), "failures": failures.get(t, 0),
         "mean_ms": ms if v else None}
        for t, v in enumerate(ok)
    ]  # fmt: skip


def test_survivors_taking_over_a_killed_replica_is_recovery_at_their_share() -> None:
    # N = 2, 1000 req/s, one replica killed at t = 5.2: the survivor carries ~500 from t = 6.
    rows = series([0, 1000, 1000, 1000, 1000, 800, 480, 500, 510, 490, 505, 0], {5: 7})
    got = faults.effect(rows, warmup_s=1, fault_t=5.2, capacity_after=0.5)
    assert got["baseline_rps"] == 1000 and got["expected_rps"] == 500
    assert got["recovered"] and got["recovery_s"] == 0.8  # t = 6, 0.8 s after the fault
    assert got["failures_after"] == 7 and got["failures_before"] == 0
    assert got["dip"] == 0.52  # the worst second, 480 of 1000


def test_a_pause_recovers_when_throughput_is_back_and_holds() -> None:
    rows = series([0, 900, 1000, 1100, 1000, 0, 0, 0, 300, 950, 1050, 980, 1000, 0])
    got = faults.effect(rows, warmup_s=1, fault_t=4.5, pause_s=3)
    assert got["dip"] == 1.0 and got["recovery_s"] == 4.5  # t = 9
    assert got["paused_s"] == 3


def test_a_pause_that_throughput_rides_out_still_counts_its_held_requests() -> None:
    """Many users, spare capacity: throughput hardly moves, but the requests held by the
    paused replica finish 1.5 s later, in a later second; their latency is the fault's."""
    rows = series([0, 1000, 1000, 1000, 980, 990, 1000, 1000, 1000, 0])
    rows[5]["max_ms"] = 1520.0
    got = faults.effect(rows, warmup_s=1, fault_t=3.6, pause_s=1.5)
    assert got["recovery_s"] == 0.4 and got["max_ms_during"] == 1520.0


def test_one_noisy_second_does_not_hide_a_recovery() -> None:
    """Seconds move ~10% with the host: a second at 88% inside a recovered stretch counts."""
    rows = series([0, 1000, 1000, 1000, 0, 0, 950, 880, 1000, 990, 0])
    got = faults.effect(rows, warmup_s=1, fault_t=4.0)
    assert got["recovery_s"] == 2.0


def test_no_recovery_in_the_window_is_said() -> None:
    rows = series([0, 1000, 1000, 1000, 300, 300, 320, 310, 0])
    got = faults.effect(rows, warmup_s=1, fault_t=4.0)
    assert not got["recovered"] and got["recovery_s"] is None
    assert "had not come back" in faults.verdict("restart-store", {"store": "redis"}, got)


def test_latency_during_the_fault_is_the_request_weighted_mean() -> None:
    rows = series([0, 1000, 1000, 100, 1000, 1000, 1000, 0])
    rows[3]["mean_ms"], rows[3]["max_ms"] = 400.0, 1500.0
    got = faults.effect(rows, warmup_s=1, fault_t=3.0)
    assert got["mean_ms_before"] == 10.0 and got["mean_ms_during"] == 400.0
    assert got["worst_second_ms"] == 400.0 and got["max_ms_during"] == 1500.0


def test_a_fault_outside_the_window_is_an_error_not_a_figure() -> None:
    got = faults.effect(series([0, 1000, 1000, 0]), warmup_s=1, fault_t=9.0)
    assert "outside the measured window" in got["error"]


def test_lost_writes_are_what_the_counter_should_hold_minus_what_it_holds() -> None:
    assert faults.lost_writes({"acknowledged": 700, "delta": -900})["lost"] == 1600
    assert faults.lost_writes({"acknowledged": 700, "delta": 700})["lost"] == 0
    assert faults.lost_writes({"acknowledged": 700, "delta": None}) is None
    assert faults.lost_writes(None) is None


def test_the_report_names_the_durability_and_the_loss() -> None:
    found = faults.effect(series([0, 1000, 1000, 1000, 990, 1000, 1000, 0]), 1, 4.0)
    doc = {"status": "complete", "store": "redis", "faults": [{
        "fault": "restart-store", "replicas": 2, "done": {"store": "redis"}, "effect": found,
        "lost_writes": {"acknowledged": 5, "delta": -3, "lost": 8},
        "durability": faults.DURABILITY["redis"], "errors": {"HTTP 503": 4},
        "verdict": faults.verdict("restart-store", {"lost_writes": {"acknowledged": 5,
                                  "delta": -3, "lost": 8}}, found),
    }]}  # fmt: skip
    md = faults.markdown(doc, ["fault-restart-store"])
    assert "lost 8 acknowledged" in md and "appendonly yes" in md and "4 x HTTP 503" in md
    assert "| restart-store | redis | 2 |" in md
    page = faults.html(doc, {"fault-restart-store": b"png"}, lambda b: "data:image/png;base64,")
    assert "data:image/png;base64," in page and "http://" not in page
