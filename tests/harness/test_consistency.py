"""analysis.consistency: counters and reads-after-writes judged against what the load
generator saw acknowledged, for a shared store and for per-process memory."""

from __future__ import annotations

import pytest

from hscale.analysis.consistency import judge, summarize


def tally(
    attempts: int = 0,
    acknowledged: int = 0,
    failed: int = 0,
    kv: tuple[int, int, int] = (0, 0, 0),
    session: tuple[int, int, int] = (0, 0, 0),
) -> dict:
    """The listener's "consistency" shape; kv/session as (reads, missing, stale)."""

    def reads(r: tuple[int, int, int]) -> dict:
        return {"writes": r[0] // 3, "reads": r[0], "missing": r[1], "stale": r[2], "failed": 0}

    return {
        "counter": {
            "attempts": attempts,
            "acknowledged": acknowledged,
            "failed": failed,
            "abandoned": attempts - acknowledged - failed,
        },
        "kv": reads(kv),
        "session": reads(session),
    }


def test_shared_store_is_consistent():
    got = judge(
        tally(10_120, 10_103, 2, kv=(9_000, 0, 0), session=(6_000, 0, 0)),
        {"replica-1": 500, "replica-2": 500},
        {"replica-1": 10_610, "replica-2": 10_610},
    )
    assert got["consistent"] and got["problems"] == []
    c = got["counter"]
    assert c["delta"] == 10_110 and c["bound_ok"] is True and c["replicas_agree"] is True
    assert c["abandoned"] == 15 and c["by_replica_delta"] == {
        "replica-1": 10_110,
        "replica-2": 10_110,
    }
    assert got["kv"]["reads"] == 9_000 and got["kv"]["missing_share"] == 0.0
    assert got["session"]["stale"] == 0


@pytest.mark.parametrize(
    ("delta", "ok", "text"),
    [
        (10_103, True, None),  # exactly the acknowledged ones
        (10_120, True, None),  # every attempt landed (at-least-once)
        (10_102, False, "counter lost increments: it rose by 10,102 but 10,103 were acknowledged"),
        (10_121, False, "counter rose by 10,121 but only 10,120 increments were sent"),
    ],
)
def test_counter_bound(delta: int, ok: bool, text: str | None):
    got = judge(tally(10_120, 10_103), {"replica-1": 7}, {"replica-1": 7 + delta})
    assert got["counter"]["bound_ok"] is ok and got["consistent"] is ok
    assert got["problems"] == ([text] if text else [])


def test_memory_diverges_with_numbers():
    got = judge(
        tally(10_110, 10_103, kv=(10_000, 3_700, 1_300), session=(6_000, 2_950, 40)),
        {"replica-1": 0, "replica-2": 0},
        {"replica-1": 5_123, "replica-2": 4_980},
    )
    assert not got["consistent"]
    c = got["counter"]
    assert c["replicas_agree"] is False and c["delta"] is None and c["bound_ok"] is None
    assert c["by_replica_after"] == {"replica-1": 5_123, "replica-2": 4_980}
    assert got["problems"] == [
        "counters diverge across replicas: replica-1 counted 5,123, replica-2 counted 4,980; "
        "10,103 increments acknowledged",
        "kv: 3,700 of 10,000 reads of a user's own writes missing (37%)",
        "kv: 1,300 of 10,000 reads of a user's own writes stale (13%)",
        "session: 2,950 of 6,000 reads after the user's own write missing (49%)",
        "session: 40 of 6,000 reads after the user's own write stale (0.7%)",
    ]
    assert got["kv"]["missing_share"] == pytest.approx(0.37)


def test_per_replica_counters_that_agree_by_chance_lost_increments():
    # memory, round robin: each replica counted exactly half, so they agree
    got = judge(tally(8_000, 8_000), {"r1": 0, "r2": 0}, {"r1": 4_000, "r2": 4_000})
    assert got["counter"]["replicas_agree"] and got["counter"]["bound_ok"] is False
    assert got["problems"] == [
        "counter lost increments: it rose by 4,000 on each of 2 replicas "
        "but 8,000 were acknowledged"
    ]


def test_divergence_without_before_shows_values():
    got = judge(tally(9, 9), None, {"replica-2": 4, "replica-1": 5})
    assert got["problems"] == [
        "counters diverge across replicas: replica-1 says 5, replica-2 says 4; "
        "9 increments acknowledged"
    ]


def test_replicas_that_disagreed_before_diverge():
    got = judge(tally(4, 4), {"replica-1": 3, "replica-2": 1}, {"replica-1": 5, "replica-2": 3})
    assert got["counter"]["replicas_agree"] is False and not got["consistent"]
    assert got["counter"]["by_replica_delta"] == {"replica-1": 2, "replica-2": 2}


def test_absent_parts():
    # a scenario without /counter, kv or session: nothing to judge, nothing wrong
    assert judge(tally(), None, None) == {"consistent": True, "problems": []}
    assert judge(None, None, None) == {"consistent": True, "problems": []}
    assert judge({"kv": {"reads": 3, "writes": 1}}, None, None)["kv"]["missing"] == 0
    # the counter was not read: counted, not checked
    c = judge(tally(5, 5), None, None)["counter"]
    assert c["bound_ok"] is None and c["replicas_agree"] is None and c["delta"] is None
    # read after only: agreement known, the change not
    c = judge(tally(5, 5), None, {"replica-1": 9})["counter"]
    assert c["replicas_agree"] is True and c["bound_ok"] is None


def test_small_shares_are_not_rounded_to_zero():
    (text,) = judge(tally(kv=(100_000, 3, 0)), None, None)["problems"]
    assert text.endswith("missing (<0.1%)")


def test_summarize_sums_and_requires_every_trial():
    good = judge(tally(100, 100, kv=(300, 0, 0)), {"r1": 0}, {"r1": 100})
    bad = judge(tally(100, 100, kv=(300, 30, 0)), {"r1": 0, "r2": 0}, {"r1": 60, "r2": 40})
    run = summarize([good, bad, None])
    assert run["trials"] == 2 and run["inconsistent_trials"] == 1 and not run["consistent"]
    assert run["counter"]["attempts"] == 200 and run["counter"]["delta"] is None
    assert run["counter"]["diverged_trials"] == 1 and run["counter"]["replicas_agree"] is False
    assert run["kv"]["reads"] == 600 and run["kv"]["missing"] == 30
    assert run["problems"] == [
        "counters diverge across replicas in 1 of 2 trials; e.g. r1 counted 60, r2 counted 40; "
        "100 increments acknowledged",
        "kv: 30 of 600 reads of a user's own writes missing (5.0%) over 2 trials",
    ]
    both = summarize([good, good])
    assert both["consistent"] and both["problems"] == []
    assert both["counter"]["delta"] == 200 and both["counter"]["bound_ok"] is True
    assert "session" not in both
    assert summarize([]) == {
        "trials": 0,
        "inconsistent_trials": 0,
        "consistent": True,
        "problems": [],
    }


def test_summarize_reports_a_broken_bound():
    lost = judge(tally(100, 100), {"r1": 0}, {"r1": 90})
    run = summarize([lost])
    assert run["counter"]["bound_ok"] is False and not run["consistent"]
    assert run["problems"] == [
        "counter outside acknowledged <= change <= sent in 1 of 1 trials; "
        "e.g. it rose by 90 with 100 acknowledged and 100 sent"
    ]
