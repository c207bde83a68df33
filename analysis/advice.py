"""What to do when the verdict cannot decide: how many more trials, how long, which command.

The verdict's question at each N is "is efficiency at least LINEAR_EFFICIENCY?". It is
undecided where E(N)'s 95% CI contains that threshold. With the trials' noise pooled over
N (a CV, see precision.py), E's log interval half-width is t * cv * sqrt(1/n_N + 1/n_b)
with n trials at N and at the baseline b. It decides the question once that half-width is
below the distance |ln(E / threshold)|, i.e. with n = 2 (t cv / d)^2 trials at both: the
number this module reports, assuming the effect size and the noise stay as measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from analysis import precision
from analysis.verdict import LINEAR_EFFICIENCY

# Closer than this to the threshold, the question has no practical answer: say so.
TOO_CLOSE = 0.01


def undecided(analysis: dict) -> list[int]:
    """The N whose efficiency CI contains LINEAR_EFFICIENCY."""
    out = []
    for n, ci in (analysis.get("efficiency_ci") or {}).items():
        if ci and ci[0] < LINEAR_EFFICIENCY <= ci[1]:
            out.append(int(n))
    return sorted(out)


def decidable(analysis: dict) -> list[int]:
    """The undecided N whose E(N) is not so close to the threshold that no practical
    number of trials decides it: where more trials are worth running."""
    eff = analysis.get("efficiency") or {}
    return [
        n
        for n in undecided(analysis)
        if eff.get(str(n)) and abs(math.log(eff[str(n)] / LINEAR_EFFICIENCY)) >= TOO_CLOSE
    ]


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
    worth = decidable(analysis)
    close = [n for n in ns if n not in worth]
    parts = [
        f"E({n}) = {eff[str(n)]:.3f} lies within {TOO_CLOSE:.0%} of the {LINEAR_EFFICIENCY} "
        "threshold: no practical number of trials decides it; read the interval."
        for n in close
    ]
    if worth:
        parts.append(_trials_text(eff, worth, cv, df, trials_per_n, sweep, trial_seconds, command))
    return " ".join(parts)


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
    n_hard = min(ns, key=lambda n: abs(math.log(eff[str(n)] / LINEAR_EFFICIENCY)))
    e = eff[str(n_hard)]
    d = abs(math.log(e / LINEAR_EFFICIENCY))
    t = precision._t(df)
    needed = max(2, math.ceil(2 * (t * cv / d) ** 2))
    have = min(trials_per_n.values(), default=0)
    rounds = max(0, needed - have)
    text = (
        f"To decide whether E({n_hard}) = {e:.2f} is at least {LINEAR_EFFICIENCY} at the "
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
