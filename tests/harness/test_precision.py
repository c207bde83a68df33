"""Precision: the host-speed control variate, pooled CIs, the sequential plan, advice."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from hscale import settings
from hscale.analysis import advice, latency, precision, verdict
from hscale.analysis.analyze import analyze
from hscale.schedule import extra_trials, precision_status, wanted_trials


def trials_with_speed(noise: float, beta: float = 1.0, seed: int = 1) -> list[dict]:
    """4 N x 4 trials: X = 100 N * speed**beta * (1 + small own noise), speed drifting."""
    rng = random.Random(seed)
    out = []
    for k in range(4):
        for n in (1, 2, 3, 4):
            speed = 10 * (1 + rng.gauss(0, 0.08))
            own = 1 + rng.gauss(0, noise)
            out.append(
                {
                    "replicas": n,
                    "trial": k + 1,
                    "throughput_rps": 100 * n * (speed / 10) ** beta * own,
                    "host_speed": speed,
                }
            )
    return out


def test_control_variate_takes_the_hosts_speed_out_and_keeps_the_raw_figures():
    trials = trials_with_speed(noise=0.005)
    cv = precision.control_variate(trials)
    assert cv["used"]
    assert cv["beta_ci"][0] < 1.0 < cv["beta_ci"][1]
    assert cv["cv_raw"] > 0.05  # the 8% speed noise
    assert cv["cv_adjusted"] < 0.01  # only the 0.5% own noise is left
    assert len(cv["adjusted"]) == len(trials)
    assert [t["throughput_rps"] for t in trials] != cv["adjusted"]


def test_a_probe_that_does_not_track_throughput_changes_little():
    trials = trials_with_speed(noise=0.03, beta=0.0)
    cv = precision.control_variate(trials)
    assert cv["beta_ci"][0] < 0.0 < cv["beta_ci"][1] or abs(cv["beta"]) < 0.3
    assert cv["cv_adjusted"] < cv["cv_raw"] * 1.15


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda ts: ts[0].update(host_speed=None), "host speed reading"),
        (lambda ts: ts.__delitem__(slice(6, None)), "too few repeated trials"),
    ],
)
def test_control_variate_is_not_used_without_readings_or_repeats(change, reason):
    trials = trials_with_speed(noise=0.01)
    change(trials)
    cv = precision.control_variate(trials, drift=False)
    assert not cv["used"] and reason in cv["reason"] and cv["fitted"] == 0
    assert cv["adjusted"] == [t["throughput_rps"] for t in trials]
    off = precision.control_variate(trials_with_speed(0.01), enabled=False, drift=False)
    assert off["reason"] == "SPEED_ADJUST=0; DRIFT_ADJUST=0" and not off["used"]


def test_without_a_speed_reading_the_drift_is_still_taken_out():
    trials = trials_with_speed(noise=0.01)
    trials[0].update(host_speed=None)
    cv = precision.control_variate(trials)
    assert cv["used"] and cv["covariates"] == ["drift"] and cv["fitted"] == 1
    assert "host speed reading" in cv["reason"] and cv["beta"] is None


def test_with_too_few_trials_for_two_slopes_the_speed_is_kept():
    trials = trials_with_speed(noise=0.005)[:8]  # 8 trials of 4 N: 3 df for one slope
    cv = precision.control_variate(trials)
    assert cv["covariates"] == ["host speed"] and "drift slope (2 df)" in cv["reason"]


def drifting(per_trial: float, extra_at: int = 0, speed_trend: float = 0.0) -> list[dict]:
    """4 N in the sweep's interleaved order (1 2 3 4 4 3 2 1 ...), 3 rounds, then `extra_at`
    more N = 4 trials; throughput = 100 N x exp(per_trial x seq) x own 0.3% noise, and x the
    speed reading (2% noise, trending by `speed_trend` a trial) when it trends, else the
    reading is noise the throughput does not follow."""
    rng = random.Random(7)
    order = [n for k in range(3) for n in ((1, 2, 3, 4) if k % 2 == 0 else (4, 3, 2, 1))]
    out = []
    for seq, n in enumerate(order + [4] * extra_at):
        speed = 10 * math.exp(speed_trend * seq) * (1 + rng.gauss(0, 0.02))
        follows = speed / 10 if speed_trend else 1.0
        x = 100 * n * math.exp(per_trial * seq) * follows * (1 + rng.gauss(0, 0.003))
        out.append({"replicas": n, "trial": 1, "seq": seq, "throughput_rps": x})
        out[-1]["host_speed"] = speed
    return out


def test_a_drift_through_the_run_is_taken_out_and_unbiases_a_late_point():
    trials = drifting(0.01, extra_at=4)  # 4 more N = 4 trials at the end, when it ran 15% up
    cv = precision.control_variate(trials)
    lo, hi = cv["drift_ci"]
    assert cv["used"] and "drift" in cv["covariates"] and lo < 0.01 < hi and hi - lo < 0.004
    assert cv["cv_raw"] > 0.03 and cv["cv_adjusted"] < 0.006
    by_n: dict[int, list[float]] = {}
    for t, x in zip(trials, cv["adjusted"], strict=True):
        by_n.setdefault(t["replicas"], []).append(x)
    e4 = sum(by_n[4]) / len(by_n[4]) / 4 / (sum(by_n[1]) / len(by_n[1]))
    raw4 = [t["throughput_rps"] for t in trials if t["replicas"] == 4]
    raw1 = [t["throughput_rps"] for t in trials if t["replicas"] == 1]
    assert sum(raw4) / len(raw4) / 4 / (sum(raw1) / len(raw1)) > 1.04  # the late trials
    assert abs(e4 - 1.0) < 0.01  # linear, as made
    unadjusted = precision.control_variate(trials, drift=False)
    assert unadjusted["cv_adjusted"] > 3 * cv["cv_adjusted"]


def test_speed_and_drift_are_told_apart():
    """The speed reading falls through the run while throughput rises: fitted alone, its
    slope takes the drift's part (as a mixed run on docker did: beta 0.26, and 0.80 with a
    drift); fitted together, both come out."""
    trials = drifting(0.01, speed_trend=-0.01)
    both = precision.control_variate(trials)
    assert both["beta_ci"][0] < 1.0 < both["beta_ci"][1]
    assert both["drift_ci"][0] < 0.01 < both["drift_ci"][1]
    assert both["cv_adjusted"] < 0.006
    alone = precision.control_variate(trials, drift=False)
    assert alone["beta"] < 0.5 and alone["cv_adjusted"] > 2 * both["cv_adjusted"]


def test_a_ratio_across_two_runs_adds_their_noises():
    # equal noise on both sides: Welch's df is the two runs' together, as one pooled run's
    same = precision.welch_ratio_ci(1.3, 3, (0.05, 6), 3, (0.05, 6))
    assert same == pytest.approx(precision.ratio_ci(3, 3, 1.3, 0.05, 12))
    # a noisy run widens the interval and takes the degrees of freedom towards its own
    noisy = precision.welch_ratio_ci(1.3, 3, (0.15, 6), 3, (0.05, 6))
    assert noisy[1] - noisy[0] > 2 * (same[1] - same[0])
    half = math.log(noisy[1] / 1.3)
    df = (0.15**2 / 3 + 0.05**2 / 3) ** 2 / ((0.15**2 / 3) ** 2 / 6 + (0.05**2 / 3) ** 2 / 6)
    assert 6 < df < 7.5 and half == pytest.approx(
        stats.t.ppf(0.975, df) * math.sqrt(0.15**2 / 3 + 0.05**2 / 3)
    )


def test_pooled_cv_and_intervals_by_hand():
    by_n = {1: [90.0, 110.0], 2: [190.0, 210.0]}
    # deviations: +-0.1 and +-0.05; 2 df
    cv, df = precision.pooled_cv(by_n)
    assert df == 2 and cv == pytest.approx(math.sqrt((0.02 + 0.005) / 2))
    assert precision.pooled_cv(by_n, fitted=1)[1] == 1
    assert precision.pooled_cv({1: [5.0], 2: [7.0]}) is None
    lo, hi = precision.mean_ci([90.0, 110.0], cv, df)
    half = stats.t.ppf(0.975, 2) * cv / math.sqrt(2) * 100
    assert (lo, hi) == pytest.approx((100 - half, 100 + half))
    lo, hi = precision.ratio_ci(2, 2, 1.0, cv, df)
    assert lo * hi == pytest.approx(1.0)  # symmetric on the log scale
    assert precision.trials_needed(0.02, 8, 0.05) == 2
    assert precision.trials_needed(0.05, 8, 0.05) == math.ceil(stats.t.ppf(0.975, 8) ** 2)


def test_efficiency_interval_uses_the_pooled_noise():
    meas = [(n, k, 100.0 * n * (1 + d)) for k, d in enumerate((-0.02, 0.0, 0.02)) for n in (1, 2)]
    a = analyze(meas)
    cv, df = a["noise"]["cv"], a["noise"]["df"]
    assert df == 4 and cv == pytest.approx(0.02 * math.sqrt(2 * 2 / 4))
    lo, hi = a["efficiency_ci"]["2"]
    half = stats.t.ppf(0.975, 4) * cv * math.sqrt(2 / 3)
    assert (lo, hi) == pytest.approx((math.exp(-half), math.exp(half)))


def test_advice_names_the_trials_minutes_and_command_only_when_undecided():
    undecided = {
        "efficiency": {"1": 1.0, "2": 0.93},
        "efficiency_ci": {"1": None, "2": [0.86, 1.0]},
        "noise": {"cv": 0.05, "df": 4},
    }
    text = advice.advice(undecided, {1: 3, 2: 3}, (1, 2), 30.0, "make bench REPLICAS=2")
    d = math.log(0.93 / 0.9)
    needed = math.ceil(2 * (stats.t.ppf(0.975, 4) * 0.05 / d) ** 2)
    assert f"about {needed} trials" in text and f"{needed - 3} more round(s)" in text
    assert f"make bench REPLICAS=2 TRIALS={needed}" in text and "minute" in text
    decided = {**undecided, "efficiency_ci": {"1": None, "2": [0.91, 0.95]}}
    assert advice.advice(decided, {1: 3, 2: 3}, (1, 2), 30.0) is None
    # E near 0.9: more trials bring its interval inside the band (an "on the line" call)
    close = {
        **undecided,
        "efficiency": {"1": 1.0, "2": 0.901},
        "efficiency_ci": {"2": [0.84, 0.96]},
    }
    d = math.log(0.95 / 0.901)
    needed = math.ceil(2 * (stats.t.ppf(0.975, 4) * 0.05 / d) ** 2)
    assert advice.distance(0.901) == pytest.approx(d)
    assert f"about {needed} trials" in advice.advice(close, {1: 3, 2: 3}, (1, 2))
    on_line = {**close, "efficiency_ci": {"2": [0.86, 0.945]}}
    assert advice.advice(on_line, {1: 3, 2: 3}, (1, 2)) is None
    # the hardest of several undecided N sets the number
    both = {
        "efficiency": {"1": 1.0, "2": 0.93, "3": 0.97},
        "efficiency_ci": {"1": None, "2": [0.84, 1.0], "3": [0.86, 1.05]},
        "noise": {"cv": 0.04, "df": 10},
    }
    assert "To decide whether E(2) = 0.93" in advice.advice(both, {1: 4, 2: 4, 3: 4}, (1, 2, 3))


def test_efficiency_calls_answer_linear_sublinear_on_the_line_or_undecided():
    call = verdict.efficiency_call
    assert call([0.91, 1.0]) == "linear" and call([0.80, 0.89]) == "sublinear"
    assert call([0.86, 0.94]) == "on the line" and call([0.85, 0.95]) == "on the line"
    assert call([0.84, 0.94]) == "undecided" and call([0.86, 0.96]) == "undecided"
    assert call(None) is None
    a = {
        "efficiency": {"1": 1.0, "2": 0.97, "3": 0.9, "4": 0.8},
        "efficiency_ci": {"1": None, "2": [0.93, 1.01], "3": [0.87, 0.93], "4": [0.77, 0.83]},
        "linear_up_to": 2,
    }
    assert verdict.decided(a)
    text = verdict.verdict(a)
    assert text.startswith("4x the replicas of N = 1 give 3.20x [3.08, 3.32] its throughput")
    assert "E(3) = 0.90 [0.87, 0.93] is on the 0.9 line" in text
    assert "Below linear with 95% confidence: E(4) = 0.80 [0.77, 0.83]" in text
    wide = {**a, "efficiency_ci": {**a["efficiency_ci"], "3": [0.8, 1.0]}}
    assert not verdict.decided(wide) and "Undecided: E(3) = 0.90 [0.80, 1.00]" in verdict.verdict(
        wide
    )
    # as narrow as the band but past its edge: undecided, and not called "wider"
    edge = {**a, "efficiency_ci": {**a["efficiency_ci"], "3": [0.87, 0.951]}}
    said = verdict.verdict(edge)
    assert "E(3) = 0.90 [0.87, 0.95], an interval that contains 0.9 and does not lie " in said
    assert "within 0.85 to 0.95." in said and "wider" not in said
    # a sublinear E(2) is an answer, not "not established"
    low = {**a, "linear_up_to": None, "efficiency_ci": {**a["efficiency_ci"], "2": [0.8, 0.88]}}
    assert "not established" not in verdict.verdict(low)


def test_throttle_marks_percentiles_the_quota_stall_dominates():
    stall = latency.throttle_stall_ms(0.25, 100_000)
    assert stall == 75.0 and latency.throttle_stall_ms(0.25, 10_000) == 7.5
    lat = {"p50": 20.0, "p90": 90.0, "p95": 120.0, "p99": 170.0, "p99_9": 400.0}
    assert latency.throttle_dominated(lat, stall, 0.95) == ["p90", "p95", "p99", "p99_9"]
    # few periods throttled: only the tail can be reached by the stall
    assert latency.throttle_dominated(lat, stall, 0.02) == ["p99", "p99_9"]
    assert latency.throttle_dominated({**lat, "p50": 37.4}, stall, 1.0)[0] == "p90"
    assert latency.throttle_dominated({**lat, "p50": 37.5}, stall, 1.0)[0] == "p50"
    assert latency.throttle_dominated({"p50": 2.0, "p99": 3.0}, 7.5, 0.95) == []
    assert latency.throttle_dominated(lat, stall, None) == []


def pt(n: int, half: float | None, trials: int) -> dict:
    ci = None if half is None else [100 * (1 - half), 100 * (1 + half)]
    return {
        "replicas": n,
        "throughput_rps": 100.0,
        "throughput_ci": ci,
        "throughput_ci_half": half,
        "trials": trials,
    }


def test_extra_trials_go_where_the_ci_is_widest_within_the_room():
    s = settings.load({"REPLICAS": "4", "CI_TARGET": "5%"}, host_cpus=2)
    points = [pt(1, 0.08, 2), pt(2, 0.04, 2), pt(3, 0.12, 2), pt(4, 0.08, 2)]
    assert extra_trials(points, s, running=4, room=None) == [4, 3, 1]  # from the running N
    assert extra_trials(points, s, running=1, room=2) == [1, 3]  # N=3 widest, then baseline
    assert extra_trials(points, s, running=1, room=0) == []
    st = precision_status(points, s, 100.0, "time budget")
    assert st["reached"] is False and st["stopped_by"] == "time budget"
    done = [pt(n, 0.04, 3) for n in (1, 2)]
    assert precision_status(done, s, 50.0, None)["stopped_by"] == "target reached"


def test_narrow_cis_with_an_undecided_efficiency_still_get_trials():
    s = settings.load({"REPLICAS": "4", "CI_TARGET": "5%", "MAX_TRIALS": "4"}, host_cpus=2)
    points = [pt(1, 0.03, 2), pt(2, 0.03, 2), pt(3, 0.03, 4), pt(4, 0.03, 2)]
    undecided = {
        "efficiency": {"1": 1.0, "2": 0.95, "3": 0.95, "4": 0.97},
        "efficiency_ci": {"1": None, "2": [0.89, 1.01], "3": [0.88, 1.02], "4": [0.91, 1.03]},
    }
    # N = 3 is undecided too, but at MAX_TRIALS; the baseline comes along with N = 2
    assert wanted_trials(points, s, undecided) == [1, 2]
    assert extra_trials(points, s, running=4, room=1, analysis=undecided) == [1]
    decided = {**undecided, "efficiency_ci": {"1": None, "2": [0.91, 0.99]}}
    assert wanted_trials(points, s, decided) == []
    on_line = {"efficiency": {"2": 0.901}, "efficiency_ci": {"2": [0.86, 0.94]}}
    assert wanted_trials(points, s, on_line) == []  # decided: on the line
    off = settings.load({"REPLICAS": "4", "CI_TARGET": "0"}, host_cpus=2)
    assert wanted_trials(points, off, undecided) == []


def test_a_trial_lost_to_a_validity_check_is_replaced_once():
    s = settings.load({"REPLICAS": "4", "CI_TARGET": "5%", "MAX_TRIALS": "4"}, host_cpus=2)
    narrow = [pt(n, 0.03, 2) for n in (1, 2, 3, 4)]
    decided = {"efficiency": {"2": 1.0}, "efficiency_ci": {"2": [0.95, 1.05]}}
    assert wanted_trials(narrow, s, decided) == []
    # N = 3: one of its 2 trials drifted, so the verdict has one: run it again
    lost = [{**p, "valid_trials": 1 if p["replicas"] == 3 else 2} for p in narrow]
    assert wanted_trials(lost, s, decided) == [3]
    assert extra_trials(lost, s, running=1, room=None, analysis=decided) == [3]
    # the replacement failed too (1 valid of 3): the cause recurs, no more
    again = [{**p, "trials": 3} if p["replicas"] == 3 else p for p in lost]
    assert wanted_trials(again, s, decided) == []
    # replaced (2 valid of 3), every trial invalid, or CI_TARGET=0: nothing to add
    done = [{**p, "trials": 3, "valid_trials": 2} if p["replicas"] == 3 else p for p in lost]
    assert wanted_trials(done, s, decided) == []
    none_valid = [{**p, "valid_trials": 0} for p in narrow]
    assert wanted_trials(none_valid, s, decided) == []
    off = settings.load({"REPLICAS": "4", "CI_TARGET": "0"}, host_cpus=2)
    assert wanted_trials(lost, off, decided) == []


def test_new_knobs_parse_and_refuse_a_quota_below_the_kernels_minimum():
    s = settings.load({"TIME_BUDGET": "5m", "CPU_PERIOD_US": "10000"}, host_cpus=2)
    assert s.time_budget == 300 and s.cpu_period_us == 10_000 and s.ci_target == 0.05
    with pytest.raises(settings.UsageError, match="below the kernel's 1000 us minimum"):
        settings.load({"REPLICA_CPUS": "0.05", "CPU_PERIOD_US": "10000"}, host_cpus=2)
    with pytest.raises(settings.UsageError, match="TIME_BUDGET must be a duration"):
        settings.load({"TIME_BUDGET": "soon"}, host_cpus=2)
    cmd = settings.bench_command(settings.load({"SCENARIO": "json", "REPLICAS": "3"}, 2))
    assert cmd == "make bench REPLICAS=3 SCENARIO=json"
