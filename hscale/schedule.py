"""Which trials run: the interleaved order, then more where the answer is not yet known.

TRIALS rounds run in alternating direction (trial_order); then trials go where a point's
CI is widest until CI_TARGET, MAX_TRIALS or the TIME_BUDGET (extra_trials), where a
point has lost a trial to a validity check (replacements), and on at an undecided E(N)
with its baseline once every CI is narrow (wanted_trials). Pure: the
sweep (sweep.py) feeds it the points and the analysis and runs what it returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from hscale.analysis.advice import undecided
from hscale.settings import Settings


def trial_order(sweep: Sequence[int], trials: int, first: int = 1) -> list[tuple[int, int]]:
    """(N, trial) in run order: ascending N, then descending, and so on, so a slow drift
    of the machine does not fall on one end of the curve, and each turn reuses the N
    already running. Trials are numbered from `first` (a resumed run goes on counting)."""
    order = []
    for k in range(first, first + trials):
        ns = sorted(sweep) if k % 2 else sorted(sweep, reverse=True)
        order += [(n, k) for n in ns]
    return order


def needs_more_trials(points: Sequence[dict], ci_target: float, max_trials: int) -> list[int]:
    """N whose CI half-width is above ci_target of its mean, below the cap of trials."""
    if not ci_target:
        return []
    out = []
    for p in points:
        ci, x = p["throughput_ci"], p["throughput_rps"]
        wide = ci is None or (x > 0 and (ci[1] - ci[0]) / 2 / x > ci_target)
        if wide and p["trials"] < max_trials:
            out.append(p["replicas"])
    return out


def replacements(points: Sequence[dict], s: Settings) -> list[int]:
    """N with fewer valid trials than the TRIALS rounds gave, where at most half its trials
    are invalid: the fit and the verdict use valid trials only, so a trial lost to a
    passing cause (a drift inside its window) is run again. A point that fails more often
    than not has a cause that another trial would meet again (a saturated load generator,
    an oversubscribed host): it is left as it is, and says why."""
    out = []
    for p in points:
        valid = p.get("valid_trials", p["trials"])
        if valid < s.trials and p["trials"] - valid <= valid and p["trials"] < s.max_trials:
            out.append(p["replicas"])
    return out


def wanted_trials(points: Sequence[dict], s: Settings, analysis: dict | None) -> list[int]:
    """The N that need another trial: those whose CI is too wide (needs_more_trials) or
    that lost a trial to a validity check (replacements), or, once neither is left, those
    whose E(N) interval still straddles the verdict's threshold, with the baseline that
    every E(N) divides by."""
    wanted = needs_more_trials(points, s.ci_target, s.max_trials)
    if s.ci_target:
        wanted = sorted({*wanted, *replacements(points, s)})
    if wanted or not s.ci_target or not analysis or not points:
        return wanted
    count = {p["replicas"]: p["trials"] for p in points}
    base = min(count)
    open_ = [n for n in undecided(analysis) if n in count]
    return [n for n in sorted({base, *open_}) if open_ and count[n] < s.max_trials]


def extra_trials(
    points: Sequence[dict],
    s: Settings,
    running: int | None,
    room: int | None,
    analysis: dict | None = None,
) -> list[int]:
    """The wanted N (wanted_trials), widest CI first, ties to the baseline (it is in every
    efficiency) then the largest N; at most `room` of them (what the time budget allows,
    None: no limit), in an order that goes on from the N now running, as trial_order
    does."""
    wide = {p["replicas"]: p.get("throughput_ci_half") or 1.0 for p in points}
    extra = wanted_trials(points, s, analysis)
    base = min(wide, default=None)
    extra.sort(key=lambda n: (-wide[n], n != base, -n))
    extra = extra[:room] if room is not None else extra
    return sorted(extra, reverse=running == max(extra, default=0))


def next_trial_cost(costs: Sequence[tuple[bool, float]], resizes: bool) -> float:
    """Wall seconds the next trial should take: the mean of the trials so far that did
    (or did not) resize as it will, or of all of them when none did; 0 before any."""
    alike = [c for r, c in costs if r == resizes] or [c for _, c in costs]
    return sum(alike) / len(alike) if alike else 0.0


def precision_status(
    points: Sequence[dict], s: Settings, elapsed: float, stopped_by: str | None
) -> dict:
    """What precision the sweep reached, and why it stopped adding trials."""
    halves = {str(p["replicas"]): p.get("throughput_ci_half") for p in points}
    reached = bool(points) and all(h is not None and h <= s.ci_target for h in halves.values())
    return {
        "ci_target": s.ci_target,
        "ci_half_widths": halves,
        "reached": reached if s.ci_target else None,
        "stopped_by": "target reached" if reached and s.ci_target else stopped_by,
        "elapsed_s": round(elapsed, 1),
        "time_budget_s": s.time_budget or None,
    }


def more_loadgen_workers(trial: dict, s: Settings, workers: int) -> int | None:
    """After a trial whose load generator saturated: more Locust processes, if the host
    has a spare core for one beyond the replicas' budgets, nginx, the store and the
    Locust processes already running; else None (the trial stays invalid)."""
    if s.loadgen_cpus or not any(
        note.startswith("load generator saturated") for note in trial["notes"]
    ):
        return None  # not saturated, or capped on purpose by LOADGEN_CPUS
    others = sum(
        c["cpu_cores"] for c in trial["components"].values() if c["kind"] in ("proxy", "store")
    )
    generating = max(1, workers)
    committed = trial["replicas"] * s.replica_cpus + others + generating
    if s.host_cpus - committed < 1.0:
        return None
    # --processes k forks k workers under a master; one process becomes two generators.
    return max(2, workers + 1)
