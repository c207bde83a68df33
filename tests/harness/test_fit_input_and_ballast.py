"""Which trials the fit uses (analyze.fit_input), and the ballast as real processes."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from hscale import cgroups
from hscale.analysis.analyze import fit_input
from hscale.ballast import Ballast


def trial(n: int, k: int, x: float, valid: bool = True) -> dict:
    return {"replicas": n, "trial": k, "throughput_rps": x, "valid": valid}


def summary(trials: list[dict]) -> dict:
    return {"schema_version": 2, "trials": trials}


def test_all_valid_trials_are_fitted_as_they_are() -> None:
    got, what = fit_input(summary([trial(1, 1, 100), trial(2, 1, 190)]))
    assert got == [(1, 1, 100.0), (2, 1, 190.0)] and what == "every trial (all valid)"


def test_invalid_trials_are_left_out_while_two_n_remain() -> None:
    trials = [trial(1, 1, 100), trial(2, 1, 190), trial(2, 2, 120, valid=False), trial(3, 1, 280)]
    got, what = fit_input(summary(trials))
    assert (2, 2, 120.0) not in got and len(got) == 3 and what == "the 3 valid trials of 4"


def test_every_trial_when_the_valid_ones_cover_fewer_than_two_n() -> None:
    trials = [trial(1, 1, 100), trial(2, 1, 190, valid=False), trial(2, 2, 185, valid=False)]
    got, what = fit_input(summary(trials))
    assert len(got) == 3 and what.startswith("every trial, invalid ones too: only 1 of 3")


def test_the_speed_adjusted_throughput_is_what_is_fitted() -> None:
    t = {**trial(1, 1, 100), "throughput_adj_rps": 110.0}
    got, _ = fit_input(summary([t, trial(2, 1, 200)]))
    assert got[0] == (1, 1, 110.0)


def test_schema_1_fits_every_point() -> None:
    s1 = {"schema_version": 1, "points": [{"replicas": 1, "throughput_rps": 10.0}]}
    assert fit_input(s1) == ([(1, 1, 10.0)], "every point (schema 1 records no trials)")


@pytest.mark.skipif(cgroups.detect()[0] == "none", reason="the ballast needs a cgroup CPU quota")
def test_ballast_loops_run_under_their_quota_and_stop(tmp_path: Path) -> None:
    ballast = Ballast("ballast-test", 0.1, tmp_path)
    try:
        ballast.resize(2)
        pids = [proc.pid for proc, _ in ballast.loops]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        start, t0 = ballast.cpu_seconds(), time.monotonic()
        time.sleep(2.0)
        used = (ballast.cpu_seconds() - start) / (time.monotonic() - t0)
        # two loops at 0.1 CPU each: busy, yet held to their quota (not two whole cores)
        assert 0.1 < used < 0.3, used
        ballast.resize(1)
        assert len(ballast.loops) == 1 and not psutil.pid_exists(pids[1])
    finally:
        ballast.stop()
    assert ballast.loops == [] and not any(psutil.pid_exists(p) for p in pids)


@pytest.mark.skipif(cgroups.detect()[0] == "none", reason="the ballast needs a cgroup CPU quota")
def test_the_top_up_loop_follows_its_quota_and_stops(tmp_path: Path) -> None:
    ballast = Ballast("topup-test", 0.1, tmp_path)
    try:
        ballast.top_up(0.3)
        assert ballast.topup is not None and ballast.topup_cores == 0.3
        pid = ballast.topup[0].pid
        start, t0 = ballast.cpu_seconds(), time.monotonic()
        time.sleep(2.0)
        used = (ballast.cpu_seconds() - start) / (time.monotonic() - t0)
        assert 0.15 < used < 0.45, used  # one loop held to 0.3 of a core
        ballast.top_up(0.1)  # the same process, its quota rewritten
        assert ballast.topup[0].pid == pid
        start, t0 = ballast.cpu_seconds(), time.monotonic()
        time.sleep(2.0)
        used = (ballast.cpu_seconds() - start) / (time.monotonic() - t0)
        assert 0.03 < used < 0.16, used
        before = ballast.cpu_seconds()
        ballast.top_up(0.01)  # below MIN_TOPUP: no loop, and the counter does not fall
        assert ballast.topup is None and ballast.topup_cores == 0.0
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert ballast.cpu_seconds() >= before
    finally:
        ballast.stop()
    assert ballast.topup is None
