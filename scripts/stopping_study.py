"""Does the sequential plan's stop keep its intervals and calls honest? A simulation of the
default plan (4 N, TRIALS=2 rounds, CI_TARGET 5%, then on while an E(N) is undecided, in a
budget of trials) with log-normal trial noise of a known size and a known E(4), using the
sweep's own pooled intervals (analysis/precision.py) and calls (analysis/verdict.py).
Prints how often E(4)'s 95% interval covers the truth and how often each call is made.

    .venv/bin/python scripts/stopping_study.py [--reps 3000] [--budget 23]

Stopping when an interval is narrow, or when a call is made, can shrink coverage below its
nominal 95% (optional stopping); this measures by how much, at the noise a run sees here.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter

import numpy as np

from hscale.analysis import precision, verdict

NS = (1, 2, 3, 4)
NEAR = 0.01  # the plan stops adding trials for an E(N) this close to the 0.9 line


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3000, help="simulated runs per case")
    p.add_argument("--budget", type=int, default=23, help="trials a run may take in all")
    p.add_argument("--fitted", type=int, default=1, help="slopes fitted (probe, drift)")
    return p.parse_args()


def one_run(rng: np.random.Generator, truth: dict[int, float], sigma: float, a) -> tuple:
    """(E(4) interval covers the truth, E(4)'s call, trials taken) for one simulated run."""
    data = {n: list(rng.lognormal(math.log(truth[n]), sigma, 2)) for n in NS}
    while True:
        noise = precision.pooled_cv(data, a.fitted)
        if noise is None:
            wanted = list(NS)
        else:
            halves = {n: precision.mean_ci(v, *noise) for n, v in data.items()}
            wanted = [
                n for n, (lo, hi) in halves.items() if (hi - lo) / 2 / np.mean(data[n]) > 0.05
            ]
        calls, eff = {}, {}
        if noise is not None:
            for n in NS[1:]:
                eff[n] = float(np.mean(data[n])) / n / float(np.mean(data[1]))
                ci = precision.ratio_ci(len(data[n]), len(data[1]), eff[n], *noise)
                calls[n] = (verdict.efficiency_call(ci), ci)
        if not wanted and calls:
            open_ = [
                n for n, (c, _) in calls.items() if c == "undecided" and abs(eff[n] - 0.9) > NEAR
            ]
            wanted = [1, *open_] if open_ else []
        taken = sum(len(v) for v in data.values())
        if not wanted or taken + len(wanted) > a.budget:
            call, (lo, hi) = calls.get(4, ("undecided", (0.0, math.inf)))
            e4 = truth[4] / 4 / truth[1]
            return lo <= e4 <= hi, call, taken
        for n in wanted:
            data[n].append(rng.lognormal(math.log(truth[n]), sigma))


def main() -> None:
    a = parse_args()
    rng = np.random.default_rng(1)
    print(f"{a.reps} runs per case, budget {a.budget} trials, {a.fitted} slope(s) fitted")
    for sigma in (0.02, 0.03, 0.05):
        for e4 in (0.84, 0.87, 0.90, 0.93, 0.96):
            truth = {1: 100.0, 2: 194.0, 3: 285.0, 4: 400.0 * e4}
            runs = [one_run(rng, truth, sigma, a) for _ in range(a.reps)]
            cover = sum(r[0] for r in runs) / a.reps
            calls = Counter(r[1] for r in runs)
            shares = ", ".join(f"{c} {calls[c] / a.reps:.1%}" for c in verdict.CALLS if calls[c])
            mean_trials = sum(r[2] for r in runs) / a.reps
            print(
                f"trial CV {sigma:.0%}, E(4) {e4:.2f}: covered {cover:.1%}, "
                f"{mean_trials:.1f} trials; calls: {shares}"
            )


if __name__ == "__main__":
    main()
