"""What to do when the verdict cannot decide: how many more trials, how long, which command.

The verdict's question at each N is "is efficiency at least LINEAR_EFFICIENCY?", with a
third answer, "on the line", when E(N)'s whole 95% interval lies within
LINEAR_EFFICIENCY +- EQUIVALENCE_MARGIN (verdict.efficiency_call). It is undecided while
the interval contains the threshold and reaches past that band. With the trials' noise
pooled over N (a CV, see precision.py), E's log interval half-width is
t * cv * sqrt(1/n_N + 1/n_b) with n trials at N and at the baseline b. One of the answers
is reached once that half-width is below the larger of |ln(E / threshold)| (the interval
then excludes it) and E's log distance to the band's nearer edge (the interval then fits
in the band), i.e. with n = 2 (t cv / d)^2 trials at both: the number this module reports,
assuming the effect size and the noise stay as measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hscale.analysis import precision
from hscale.analysis.verdict import (
    EQUIVALENCE_MARGIN,
    LINEAR_EFFICIENCY,
    calls_of,
    equivalence_band,
)


def undecided(analysis: dict) -> list[int]:
    """The N whose efficiency call is "undecided"."""
    return sorted(int(n) for n, call in calls_of(analysis).items() if call == "undecided")


def distance(e: float) -> float:
    """How narrow (in log units) E's interval half-width must get to decide E = e."""
    lo, hi = equivalence_band()
    to_line = abs(math.log(e / LINEAR_EFFICIENCY))
    to_band = min(math.log(hi / e), math.log(e / lo)) if lo < e < hi else 0.0
    return max(to_line, to_band)


def advice(
    analysis: dict,
    trials_per_n: dict[int, int],
    sweep: Sequence[int],
    trial_seconds: float | None = None,
    command: str | None = None,
) -> str | None:
    """One or two sentences, or None when every N is decided or nothing can be said."""
    noise = analysis.get("noise") or {}
    cv, df = noise.get("cv"), noise.get("df")
    ns = undecided(analysis)
    if not ns or not cv or not df:
        return None
    eff = analysis["efficiency"]
    return _trials_text(eff, ns, cv, df, trials_per_n, sweep, trial_seconds, command)


def _trials_text(
    eff: dict,
    ns: Sequence[int],
    cv: float,
    df: int,
    trials_per_n: dict[int, int],
    sweep: Sequence[int],
    trial_seconds: float | None,
    command: str | None,
) -> str:
    # The hardest question that trials can decide sets how many every N needs.
    n_hard = min(ns, key=lambda n: distance(eff[str(n)]))
    e = eff[str(n_hard)]
    d = distance(e)
    t = precision._t(df)
    needed = max(2, math.ceil(2 * (t * cv / d) ** 2))
    have = min(trials_per_n.values(), default=0)
    rounds = max(0, needed - have)
    text = (
        f"To decide whether E({n_hard}) = {e:.2f} is above, below or on the "
        f"{LINEAR_EFFICIENCY} line (+-{EQUIVALENCE_MARGIN}) at the "
        f"noise measured (trial CV {cv:.1%}), every N needs about {needed} trials "
        f"({rounds} more round(s) of N = {', '.join(map(str, sweep))}"
    )
    if trial_seconds:
        minutes = rounds * len(sweep) * trial_seconds / 60
        text += f", about {max(1, math.ceil(minutes))} more minute(s)"
    text += ")"
    if command:
        budget = ""
        if trial_seconds:
            total = needed * len(sweep) * trial_seconds / 60
            budget = f" TIME_BUDGET={math.ceil(total * 1.2)}m"
        text += f": {command} TRIALS={needed} MAX_TRIALS={max(needed, 10)}{budget}"
    return text + "."
