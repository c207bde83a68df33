"""Several runs side by side, as data: each run's numbers, the ratio of each to the first,
the differences in settings and the ranking in words. Pure: compare_render.py draws and
formats it, compare_files.py reads the runs and writes the files.

The unit is one trial's throughput, as within a run: the ratio at N is mean(trials of B)
/ mean(trials of A), with a 95% CI from each run's trial noise pooled over its N (as the
run's own intervals are; precision.welch_ratio_ci). A bootstrap of 2 to 5 trials per
side under-covers (about 80% for a nominal 95%).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hscale.analysis import precision, report
from hscale.analysis.analyze import fitted_params

SCHEMA_VERSION = 1  # of compare.json; fields are only added within a version
MISSING = report.MISSING
# A store's CPU at or above this share of its budget (one core without a quota: Redis runs
# commands on one thread) counts as saturated, as the load generator's does in validity.
SATURATED = 0.9
LATENCY_KEYS = ("p50", "p90", "p99", "p99_9", "max", "mean")
# Settings that make two runs measure different things when they differ.
SAME = ("scenario", "runtime")
SAME_CONFIG = ("replica_cpus", "duration", "warmup", "load", "users_per_replica", "users")


class CompareError(ValueError):
    """Bad input: not a run directory, fewer than 2 runs, another schema. One line."""


@dataclass(frozen=True)
class Run:
    label: str
    path: Path
    summary: dict
    manifest: dict


def store_cpu(components: Mapping[str, Mapping] | None) -> dict | None:
    """The store's own CPU at one N (its components summed): cores, and util against its
    budget or, without one, against one core. None when the run has no store process
    (memory keeps its data in each replica)."""
    stores = {k: c for k, c in (components or {}).items() if c.get("kind") == "store"}
    if not stores:
        return None
    cores = sum(c.get("cpu_cores") or 0.0 for c in stores.values())
    budgets = [c.get("budget_cpus") for c in stores.values()]
    budget = sum(b or 1.0 for b in budgets)
    return {
        "components": sorted(stores),
        "cpu_cores": round(cores, 4),
        "budget_cpus": round(budget, 4),
        "budget_assumed": any(b is None for b in budgets),
        "util": round(cores / budget, 4),
    }


def _consistency(checked: Mapping | None) -> dict | None:
    """The run's consistency summary as sweep stored it, with its verdict in words."""
    if checked is None:
        return None
    return {**checked, "verdict": report.consistency_line(checked)}


def _run_numbers(run: Run) -> dict:
    s, analysis = run.summary, run.summary.get("analysis") or {}
    full = (analysis.get("models") or {}).get("usl") or {}
    params, cis = full.get("params") or {}, full.get("ci") or {}
    return {
        "label": run.label,
        "run_id": s.get("run_id"),
        "path": str(run.path),
        "scenario": s.get("scenario"),
        "runtime": s.get("runtime"),
        "status": s.get("status"),
        "config": {k: (run.manifest.get("config") or {}).get(k) for k in SAME_CONFIG},
        "noise": _noise(s),
        "points": [
            {
                "n": p["replicas"],
                "trials": p.get("trials"),
                "throughput_rps": p["throughput_rps"],
                "throughput_ci": p.get("throughput_ci"),
                "throughput_trials": p.get("throughput_trials") or [p["throughput_rps"]],
                "efficiency": p.get("efficiency"),
                "efficiency_ci": p.get("efficiency_ci"),
                "valid": p.get("valid", False),
                "latency_ms": {k: (p.get("latency_ms") or {}).get(k) for k in LATENCY_KEYS},
                "bottleneck": p.get("bottleneck"),
                "store_cpu": store_cpu(p.get("components")),
            }
            for p in s.get("points") or []
        ],
        "model": analysis.get("model"),
        "linear_up_to": analysis.get("linear_up_to"),
        "consistency": _consistency(s.get("consistency")),
        "usl": {
            "sigma": params.get("sigma"),
            "sigma_ci": cis.get("sigma"),
            "kappa": params.get("kappa"),
            "kappa_ci": cis.get("kappa"),
            "lambda": params.get("lambda"),
            "lambda_ci": cis.get("lambda"),
            # The USL fit's peak (usl_peak_n) matches the USL parameters shown beside it.
            "peak_n": analysis.get("usl_peak_n", analysis.get("peak_n")),
        }
        if full
        else None,
    }


def _noise(summary: Mapping) -> dict | None:
    """The run's trial noise pooled over its N, after the slopes it fitted (precision.py):
    what its own intervals rest on, and the comparison's."""
    by_n = {p["replicas"]: p.get("throughput_trials") or [] for p in summary.get("points") or []}
    noise = precision.pooled_cv(by_n, fitted_params(dict(summary)))
    return None if noise is None else {"cv": round(noise[0], 5), "df": noise[1]}


def _differences(runs: Sequence[Run]) -> list[str]:
    """What differs between the runs besides what is being compared: read before trusting."""
    notes = []
    for key in SAME:
        values = {str(r.summary.get(key)) for r in runs}
        if len(values) > 1:
            notes.append(f"{key} differs: {', '.join(sorted(values))}")
    for key in SAME_CONFIG:
        values = {str((r.manifest.get("config") or {}).get(key)) for r in runs}
        if len(values) > 1:
            notes.append(f"config {key} differs: {', '.join(sorted(values))}")
    notes += [
        f"{r.label}: status {r.summary.get('status')}"
        for r in runs
        if r.summary.get("status") != "complete"
    ]
    return notes


def comparison(runs: Sequence[Run]) -> dict:
    """compare.json: every run's per-N means and CIs, ratios to the first run, USL params."""
    numbers = [_run_numbers(r) for r in runs]
    base = {p["n"]: p for p in numbers[0]["points"]}
    ratios = []
    for other in numbers[1:]:
        for p in other["points"]:
            b = base.get(p["n"])
            if b is None or b["throughput_rps"] <= 0:
                continue
            ratio = float(np.mean(p["throughput_trials"])) / float(np.mean(b["throughput_trials"]))
            noises = other["noise"], numbers[0]["noise"]
            interval = (
                precision.welch_ratio_ci(
                    ratio,
                    len(p["throughput_trials"]),
                    (noises[0]["cv"], noises[0]["df"]),
                    len(b["throughput_trials"]),
                    (noises[1]["cv"], noises[1]["df"]),
                )  # fmt: skip
                if noises[0] and noises[1]
                else None
            )
            ratios.append(
                {
                    "label": other["label"],
                    "n": p["n"],
                    "ratio": ratio,
                    "ci": None if interval is None else list(interval),
                    "valid": p["valid"] and b["valid"],
                }
            )
    data = {
        "schema_version": SCHEMA_VERSION,
        "baseline": numbers[0]["label"],
        "runs": numbers,
        "ratios": ratios,
        "notes": _differences(runs),
    }
    return {**data, "ranking": ranking(data)}


def point_at(run: Mapping, n: int | None) -> dict | None:
    return next((p for p in run["points"] if p["n"] == n), None)


def _times(value: float) -> str:
    return f"{value:.2f}x"


def _ci(ci: Sequence[float] | None) -> str:
    return "(no CI: one trial)" if not ci else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def of_budget(util: float | None, budget: float | None, assumed: bool) -> str:
    """Share of one core for a component without a quota of its own, else of its budget."""
    if assumed and budget == 1.0:
        return f"{report.pct(util)} of one core"
    return f"{report.pct(util)} of its {report.num(budget)} CPU budget"


def _scaling(run: Mapping) -> str:
    """How far the run scales, where its store saturates, and its bottleneck at its top N."""
    label, pts = run["label"], run["points"]
    k = run.get("linear_up_to")
    if run.get("model") is None:
        text = f"{label} has no scaling fit"
    elif k is None:
        text = f"{label} is not about linear (E CI >= 0.9) at any N above its first"
    else:
        text = f"{label} scales about linearly (E CI >= 0.9) up to N = {k}"
    full = [p for p in pts if p["store_cpu"] and p["store_cpu"]["util"] >= SATURATED]
    if full:
        sc, at = full[0]["store_cpu"], full[0]["n"]
        text += " before" if k is not None and at > k else ";"
        text += (
            f" its store saturates at N = {at} ({report.fixed(sc['cpu_cores'])} cores, "
            f"{of_budget(sc['util'], sc['budget_cpus'], sc['budget_assumed'])})"
        )
    elif pts and all(p["store_cpu"] is None for p in pts):
        text += " with no store process of its own"
    top = pts[-1] if pts else {}
    b = top.get("bottleneck")
    if b:
        where = of_budget(b.get("util_of_budget"), b.get("budget_cpus"), b.get("budget_assumed"))
        text += f"; its bottleneck at N = {top['n']} is {b['component']} at {where}"
        sc = top["store_cpu"]
        if sc and b.get("kind") != "store":  # the store's own load beside it
            text += (
                f" (the store at {of_budget(sc['util'], sc['budget_cpus'], sc['budget_assumed'])})"
            )
    return text + "."


def _ratio_sentence(x: Mapping, base: str, consistent: bool | None) -> str:
    label, n, r, ci = x["label"], x["n"], x["ratio"], x["ci"]
    if ci and ci[0] <= 1 <= ci[1]:
        text = f"{label} and {base} are not distinguishable at N = {n}: {_times(r)} {_ci(ci)}"
    elif r >= 1:
        text = f"{label} is {_times(r)} faster than {base} at N = {n} {_ci(ci)}"
    else:
        text = f"{label} reaches {_times(r)} of {base}'s throughput at N = {n} {_ci(ci)}"
    if not x["valid"]:
        text += " (a point not valid)"
    if consistent is False:
        text += f", but {label} is wrong"
    return text + "."


def ranking(data: Mapping) -> dict:
    """Rank the runs by mean throughput at the largest N every run measured, with the
    caveat that a run whose shared state was wrong does not win however fast it is.

    Returns {"n", "order" (labels, fastest first), "fastest", "winner" (the fastest not
    shown inconsistent, or None), "text"}: the paragraph at the top of compare.md/.html.
    """
    runs, base = data["runs"], data["baseline"]
    common = set.intersection(*({p["n"] for p in r["points"]} for r in runs))
    if not common:
        text = "No N was measured by every run, so they are not ranked."
        return {"n": None, "order": [], "fastest": None, "winner": None, "text": text}
    n = max(common)
    at_n = {r["label"]: point_at(r, n) or {} for r in runs}  # every run has n: it is common
    ranked = sorted(runs, key=lambda r: -at_n[r["label"]]["throughput_rps"])
    ok = {r["label"]: report.consistency_ok(r.get("consistency")) for r in ranked}
    problems = {r["label"]: (r.get("consistency") or {}).get("problems") or [] for r in ranked}
    fastest = ranked[0]["label"]
    winner = next((r["label"] for r in ranked if ok[r["label"]] is not False), None)
    order = ", ".join(
        f"{i}. {r['label']} {report.num(at_n[r['label']]['throughput_rps'])} req/s"
        for i, r in enumerate(ranked, start=1)
    )
    out = [f"At N = {n}, the largest N every run measured: {order}."]
    if ok[fastest] is False:
        out.append(f"{fastest} is the fastest but wrong: {'; '.join(problems[fastest])}.")
        if winner is None:
            out.append("No run was consistent, so none wins.")
        else:
            out.append(
                f"Of the consistent runs, {winner} is the fastest."
                if ok[winner]
                else f"{winner} is the fastest run not shown wrong (its consistency was not "
                "checked)."
            )
    else:
        out.append(
            f"{fastest} is the fastest"
            + (", and consistent." if ok[fastest] else "; its consistency was not checked.")
        )
    out += [
        f"{label} is wrong{' too' if ok[fastest] is False else ''}: {'; '.join(problems[label])}."
        for label in ok
        if ok[label] is False and label != fastest
    ]
    said = {fastest, winner}  # their sentence above says when they were not checked
    unchecked = [label for label in ok if ok[label] is None and label not in said]
    if unchecked:
        out.append(f"Consistency was not checked for {', '.join(unchecked)}.")
    out += [_scaling(r) for r in ranked]
    out += [_ratio_sentence(x, base, ok.get(x["label"])) for x in data["ratios"] if x["n"] == n]
    return {
        "n": n,
        "order": [r["label"] for r in ranked],
        "fastest": fastest,
        "winner": winner,
        "text": " ".join(out),
    }
