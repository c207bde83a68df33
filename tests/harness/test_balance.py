"""The top-up's size: the rest of the host's use at the largest N minus at this N."""

from __future__ import annotations

import pytest

from hscale.balance import others_cores, top_up_cores


def trial(n: int, busy: float | None, replicas: list[float]) -> dict:
    comps = {f"replica-{i}": {"kind": "replica", "cpu_cores": c} for i, c in enumerate(replicas)}
    comps["loadgen"] = {"kind": "loadgen", "cpu_cores": 0.4}  # inside busy, not subtracted
    return {"replicas": n, "host": {"busy_cores": busy}, "components": comps}


def test_others_is_the_host_beside_the_replicas() -> None:
    assert others_cores(trial(2, 1.2, [0.25, 0.25])) == pytest.approx(0.7)
    assert others_cores(trial(1, 0.2, [0.25])) == 0.0  # never negative
    assert others_cores(trial(1, None, [0.25])) is None
    assert others_cores({"replicas": 1, "host": {"busy_cores": 1.0}}) is None


def test_measured_largest_and_this_n_give_the_difference() -> None:
    measured = [(1, 0.2), (4, 0.7), (4, 0.9), (1, 0.3)]
    assert top_up_cores(measured, 1, 4) == pytest.approx(0.8 - 0.25)
    assert top_up_cores(measured, 4, 4) == 0.0  # the largest N is the reference


def test_unmeasured_n_grow_in_proportion_to_n() -> None:
    # Only N = 1 known (the warm-up trial): the rest of the host at 0.15 per replica.
    assert top_up_cores([(1, 0.15)], 1, 4) == pytest.approx(0.45)
    assert top_up_cores([(1, 0.15)], 2, 4) == pytest.approx(0.3)
    # N = 4 known, N = 2 not: 2/4 of it there (per replica averaged over what is known).
    assert top_up_cores([(1, 0.2), (4, 0.6)], 2, 4) == pytest.approx(0.6 - 2 * 0.175)


def test_nothing_measured_or_less_used_at_the_largest_gives_no_top_up() -> None:
    assert top_up_cores([], 1, 4) == 0.0
    assert top_up_cores([(1, 0.5), (4, 0.3)], 1, 4) == 0.0
