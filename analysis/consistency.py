"""Whether the shared state matches what the load generator saw acknowledged.

Inputs are the tally's "consistency" counts (loadtests/hscale_listener.py, over the whole
Locust run, warm-up included) and GET /counter read through every replica before and
after the trial (replica name -> value). A shared store keeps one counter that rose by
at least every acknowledged increment and at most every one sent (at-least-once: an
unacknowledged one may or may not have landed), and returns each user's own last write.
A per-process store (memory) keeps one counter per replica, and a write only where it
landed: its counters diverge and reads through another replica miss or go stale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

COUNTER_FIELDS = ("attempts", "acknowledged", "failed", "abandoned")
READ_FIELDS = ("writes", "reads", "missing", "stale", "failed")
READ_KINDS = {
    # kind: how a problem names the reads
    "kv": "reads of a user's own writes",
    "session": "reads after the user's own write",
}


def judge(
    trial_consistency: Mapping[str, Any] | None,
    counter_before: Mapping[str, int] | None,
    counter_after: Mapping[str, int] | None,
) -> dict[str, Any]:
    """One trial's verdict: a section per kind the scenario used ("counter", "kv",
    "session"), whether all is consistent and the problems found, with the numbers."""
    tc = trial_consistency or {}
    out: dict[str, Any] = {}
    problems: list[str] = []
    counter = tc.get("counter") or {}
    if counter.get("attempts"):
        out["counter"] = _counter(counter, counter_before, counter_after, problems)
    for kind in READ_KINDS:
        reads = _reads(kind, tc.get(kind) or {}, problems)
        if reads["writes"] or reads["reads"]:
            out[kind] = reads
    return {**out, "consistent": not problems, "problems": problems}


def summarize(per_trial: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """A run's verdict from its trials' judge() outputs (None: a trial without one): sums,
    and consistent only if every trial is."""
    trials = [t for t in per_trial if t is not None]
    out: dict[str, Any] = {
        "trials": len(trials),
        "inconsistent_trials": sum(not t["consistent"] for t in trials),
    }
    problems: list[str] = []
    counters = [t["counter"] for t in trials if "counter" in t]
    if counters:
        out["counter"] = _sum_counters(counters, problems)
    for kind in READ_KINDS:
        sections = [t[kind] for t in trials if kind in t]
        if sections:
            totals = {f: sum(s[f] for s in sections) for f in READ_FIELDS}
            out[kind] = _reads(kind, totals, problems, len(sections))
    return {**out, "consistent": out["inconsistent_trials"] == 0, "problems": problems}


# -- counter ----------------------------------------------------------------------------


def _counter(
    counts: Mapping[str, int],
    before: Mapping[str, int] | None,
    after: Mapping[str, int] | None,
    problems: list[str],
) -> dict[str, Any]:
    attempts, acked = counts.get("attempts", 0), counts.get("acknowledged", 0)
    failed = counts.get("failed", 0)
    out: dict[str, Any] = {
        "attempts": attempts,
        "acknowledged": acked,
        "failed": failed,
        "abandoned": counts.get("abandoned", attempts - acked - failed),
        "delta": None,
        "bound_ok": None,  # None: not checked (the counter was not read before and after)
        "replicas_agree": None,
        "by_replica_before": dict(before) if before else None,
        "by_replica_after": dict(after) if after else None,
        "by_replica_delta": None,
    }
    if not after:
        return out
    agree = len(set(after.values())) == 1 and (not before or len(set(before.values())) == 1)
    out["replicas_agree"] = agree
    if before and set(before) == set(after):
        out["by_replica_delta"] = {r: after[r] - before[r] for r in after}
    if not agree:
        problems.append(_divergence(out["by_replica_delta"] or after, bool(before), acked))
        return out
    if not before:
        return out
    delta = next(iter(after.values())) - next(iter(before.values()))
    out["delta"] = delta
    out["bound_ok"] = acked <= delta <= attempts
    where = f" on each of {len(after)} replicas" if len(after) > 1 else ""
    if delta < acked:  # memory split evenly by round robin lands here too
        problems.append(
            f"counter lost increments: it rose by {delta:,}{where} but {acked:,} were acknowledged"
        )
    elif delta > attempts:
        problems.append(
            f"counter rose by {delta:,}{where} but only {attempts:,} increments were sent"
        )
    return out


def _divergence(values: Mapping[str, int], deltas: bool, acked: int) -> str:
    verb = "counted" if deltas else "says"
    each = ", ".join(f"{r} {verb} {v:,}" for r, v in sorted(values.items()))
    return f"counters diverge across replicas: {each}; {acked:,} increments acknowledged"


def _sum_counters(counters: list[Mapping[str, Any]], problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {f: sum(c[f] for c in counters) for f in COUNTER_FIELDS}
    deltas = [c["delta"] for c in counters]
    out["delta"] = None if None in deltas else sum(deltas)
    checked = [c["bound_ok"] for c in counters if c["bound_ok"] is not None]
    out["bound_ok"] = all(checked) if checked else None
    read = [c["replicas_agree"] for c in counters if c["replicas_agree"] is not None]
    out["replicas_agree"] = all(read) if read else None
    diverged = [c for c in counters if c["replicas_agree"] is False]
    out["diverged_trials"] = len(diverged)
    if diverged:
        first = diverged[0]
        values = first["by_replica_delta"] or first["by_replica_after"]
        text = _divergence(values, first["by_replica_delta"] is not None, first["acknowledged"])
        problems.append(
            f"counters diverge across replicas in {len(diverged)} of {len(counters)} "
            f"trials; e.g. {text.removeprefix('counters diverge across replicas: ')}"
        )
    broken = [c for c in counters if c["bound_ok"] is False]
    if broken:
        first = broken[0]
        problems.append(
            f"counter outside acknowledged <= change <= sent in {len(broken)} of "
            f"{len(counters)} trials; e.g. it rose by {first['delta']:,} with "
            f"{first['acknowledged']:,} acknowledged and {first['attempts']:,} sent"
        )
    return out


# -- reads of the user's own writes -----------------------------------------------------


def _reads(
    kind: str, counts: Mapping[str, int], problems: list[str], trials: int = 1
) -> dict[str, Any]:
    out: dict[str, Any] = {f: counts.get(f, 0) for f in READ_FIELDS}
    reads = out["reads"]
    for bad in ("missing", "stale"):
        out[f"{bad}_share"] = out[bad] / reads if reads else None
        if out[bad]:
            where = f" over {trials} trials" if trials > 1 else ""
            problems.append(
                f"{kind}: {out[bad]:,} of {reads:,} {READ_KINDS[kind]} {bad} "
                f"({_percent(out[bad] / reads)}){where}"
            )
    return out


def _percent(share: float) -> str:
    if share >= 0.1:
        return f"{share:.0%}"
    return f"{share:.1%}" if share >= 0.001 else "<0.1%"
