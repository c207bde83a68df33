"""Several runs side by side: throughput vs N of each, and each run's ratio to the first.

The unit is one trial's throughput, as within a run: the ratio at N is mean(trials of B)
/ mean(trials of A) with a bootstrap 95% CI (analysis.stats.ratio_ci). Writes
compare.html (self-contained, like report.html), compare.md, compare.json and figures/
into a new directory. Only load_runs and write_comparison touch files.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hscale.analysis import plot, report, stats
from hscale.analysis.record import RecordError, read_manifest, read_summary
from matplotlib import ticker
from matplotlib.figure import Figure

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


def new_compare_id() -> str:
    """Time-sortable and unique, like a run id."""
    return f"compare-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


# -- numbers ------------------------------------------------------------------------------
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
            interval = stats.ratio_ci(p["throughput_trials"], b["throughput_trials"])
            ratios.append(
                {
                    "label": other["label"],
                    "n": p["n"],
                    "ratio": float(np.mean(p["throughput_trials"]))
                    / float(np.mean(b["throughput_trials"])),
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


# -- ranking ------------------------------------------------------------------------------
def _point(run: Mapping, n: int | None) -> dict | None:
    return next((p for p in run["points"] if p["n"] == n), None)


def _times(value: float) -> str:
    return f"{value:.2f}x"


def _ci(ci: Sequence[float] | None) -> str:
    return "(no CI: one trial)" if not ci else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _of_budget(util: float | None, budget: float | None, assumed: bool) -> str:
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
            f"{_of_budget(sc['util'], sc['budget_cpus'], sc['budget_assumed'])})"
        )
    elif pts and all(p["store_cpu"] is None for p in pts):
        text += " with no store process of its own"
    top = pts[-1] if pts else {}
    b = top.get("bottleneck")
    if b:
        where = _of_budget(b.get("util_of_budget"), b.get("budget_cpus"), b.get("budget_assumed"))
        text += f"; its bottleneck at N = {top['n']} is {b['component']} at {where}"
        sc = top["store_cpu"]
        if sc and b.get("kind") != "store":  # the store's own load beside it
            text += (
                f" (the store at {_of_budget(sc['util'], sc['budget_cpus'], sc['budget_assumed'])})"
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
    at_n = {r["label"]: _point(r, n) or {} for r in runs}  # every run has n: it is common
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


# -- text ---------------------------------------------------------------------------------
def table_rows(data: Mapping) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the ratio table: per N, each run's req/s and its ratio to the first."""
    runs, base = data["runs"], data["baseline"]
    header = ["N"]
    for i, r in enumerate(runs):
        header.append(f"{r['label']} req/s")
        if i:
            header.append(f"{r['label']} / {base}")
    ratio = {(x["label"], x["n"]): x for x in data["ratios"]}
    rows = []
    for n in sorted({p["n"] for r in runs for p in r["points"]}):
        row = [str(n)]
        for i, r in enumerate(runs):
            p = next((p for p in r["points"] if p["n"] == n), None)
            cell = MISSING if p is None else report.with_ci(p["throughput_rps"], p["throughput_ci"])
            row.append(cell + ("" if p is None or p["valid"] else " (not valid)"))
            if i:
                x = ratio.get((r["label"], n))
                row.append(MISSING if x is None else report.with_ci(x["ratio"], x["ci"], _ratio))
        rows.append(row)
    return header, rows


def _per_n(
    data: Mapping, columns: Sequence[tuple[str, Callable[[Mapping], str]]]
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a table with a row per N and, per run, a column per (title, cell
    of a point); a run without that N gets MISSING."""
    runs = data["runs"]
    header = ["N"] + [f"{r['label']} {title}" for r in runs for title, _ in columns]
    rows = []
    for n in sorted({p["n"] for r in runs for p in r["points"]}):
        row = [str(n)]
        for r in runs:
            p = _point(r, n)
            row += [MISSING if p is None else cell(p) for _, cell in columns]
        rows.append(row)
    return header, rows


def _latency(p: Mapping) -> str:
    lat = p.get("latency_ms") or {}
    return f"{report.num(lat.get('p50'))} / {report.num(lat.get('p99'))}"


def _store(p: Mapping) -> str:
    sc = p.get("store_cpu")
    if not sc:
        return "no store process"
    util = _of_budget(sc["util"], sc["budget_cpus"], sc["budget_assumed"])
    return f"{report.fixed(sc['cpu_cores'])} cores ({util})" + (
        " saturated" if sc["util"] >= SATURATED else ""
    )


def latency_rows(data: Mapping) -> tuple[list[str], list[list[str]]]:
    """Per N, each run's p50 / p99 in ms (every trial's histogram merged)."""
    return _per_n(data, [("p50 / p99 ms", _latency)])


def bottleneck_rows(data: Mapping) -> tuple[list[str], list[list[str]]]:
    """Per N, each run's bottleneck and its store's own CPU, so a saturated store shows."""
    return _per_n(data, [("bottleneck", report.bottleneck), ("store CPU", _store)])


def consistency_rows(data: Mapping) -> list[dict[str, Any]]:
    """Per run: consistent, wrong (with the problems and their numbers) or not checked."""
    rows = []
    for r in data["runs"]:
        c = r.get("consistency")
        ok = report.consistency_ok(c)
        rows.append(
            {
                "label": r["label"],
                "consistent": ok,
                "state": (
                    "not checked" if ok is None else ("consistent" if ok else "not consistent")
                ),
                "verdict": report.consistency_line(c),
            }
        )
    return rows


def _ratio(value: float | None) -> str:
    return report.fixed(value, 3)


def ratio_table(data: Mapping) -> str:
    """The ratio table as aligned plain text, for the terminal."""
    header, rows = table_rows(data)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def usl_rows(data: Mapping) -> list[dict[str, str]]:
    rows = []
    for r in data["runs"]:
        u = r["usl"] or {}
        rows.append(
            {
                "label": r["label"],
                "model": r["model"] or "no fit",
                "sigma": report.with_ci(u.get("sigma"), u.get("sigma_ci")),
                "kappa": report.with_ci(u.get("kappa"), u.get("kappa_ci")),
                "lambda": report.with_ci(u.get("lambda"), u.get("lambda_ci")),
                "peak_n": report.num(u.get("peak_n")),
            }
        )
    return rows


def _ranking_text(data: Mapping) -> str:
    return (data.get("ranking") or ranking(data))["text"]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def markdown(data: Mapping, figure_names: Sequence[str]) -> str:
    header, rows = table_rows(data)
    lines = [f"### hscale compare: {', '.join(r['label'] for r in data['runs'])}", ""]
    lines += [f"**Ranking.** {_ranking_text(data)}", ""]
    lines += [
        f"- **{r['label']}**: run {r['run_id']} ({r['status']}), {r['scenario']} on {r['runtime']}"
        for r in data["runs"]
    ]
    lines += ["", *_md_table(header, rows)]
    lines += ["", "Latency per N (p50 / p99 ms):", "", *_md_table(*latency_rows(data))]
    lines += [
        "",
        "Bottleneck and the store's own CPU per N (no quota: against one core):",
        "",
        *_md_table(*bottleneck_rows(data)),
    ]
    lines += ["", "USL fit per run (σ contention, κ coherency, 95% CI):", ""]
    for u in usl_rows(data):
        lines.append(
            f"- {u['label']}: chosen model {u['model']}; σ = {u['sigma']}, "
            f"κ = {u['kappa']}, peak N* = {u['peak_n']}"
        )
    lines += ["", "Consistency per run:", ""]
    lines += [f"- {c['label']}: {c['verdict']}" for c in consistency_rows(data)]
    if data["notes"]:
        lines += ["", "Read before trusting: " + "; ".join(data["notes"]) + "."]
    lines += ["", "Figures: " + " · ".join(f"[{n}](figures/{n}.png)" for n in figure_names), ""]
    return "\n".join(lines)


def html(data: Mapping, pngs: Mapping[str, bytes], out: Path) -> str:
    header, rows = table_rows(data)
    runs = [
        {**r, "report": os.path.relpath(Path(r["path"]) / "report.html", out)} for r in data["runs"]
    ]
    return (
        report.environment()
        .get_template("compare.html.j2")
        .render(
            title=f"hscale compare: {', '.join(r['label'] for r in runs)}",
            runs=runs,
            header=header,
            rows=rows,
            usl=usl_rows(data),
            latency=latency_rows(data),
            bottlenecks=bottleneck_rows(data),
            consistency=consistency_rows(data),
            ranking=_ranking_text(data),
            notes=data["notes"],
            figures=[{"name": n, "src": report.data_uri(png)} for n, png in pngs.items()],
        )
    )


# -- figures ------------------------------------------------------------------------------
def _yerr(values: Sequence[float], cis: Sequence[Sequence[float] | None]) -> np.ndarray:
    err = np.zeros((2, len(values)))
    for i, (v, c) in enumerate(zip(values, cis, strict=True)):
        if c is not None:
            err[:, i] = max(v - c[0], 0.0), max(c[1] - v, 0.0)
    return err


def throughput_figure(data: Mapping) -> Figure:
    """Every run's per-N mean with its 95% CI (hollow: not valid) and its trials, overlaid."""
    fig = Figure(figsize=(7.5, 4.5), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for i, r in enumerate(data["runs"]):
        pts, colour = r["points"], f"C{i}"
        ns, xs = [p["n"] for p in pts], [p["throughput_rps"] for p in pts]
        ax.errorbar(
            ns,
            xs,
            yerr=_yerr(xs, [p["throughput_ci"] for p in pts]),
            fmt="-",
            color=colour,
            capsize=4,
            label=r["label"],
        )
        for p in pts:
            ax.plot(
                p["n"],
                p["throughput_rps"],
                "o",
                color=colour,
                markerfacecolor=colour if p["valid"] else "white",
            )
            ax.plot(
                [p["n"] + 0.08 * (i + 1)] * len(p["throughput_trials"]),
                p["throughput_trials"],
                ".",
                color=colour,
                alpha=0.4,
                markersize=4,
            )
    all_n = sorted({p["n"] for r in data["runs"] for p in r["points"]})
    ax.set_xticks(all_n)
    ax.set_xlim(0, max(all_n) + 0.5)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("replicas N")
    ax.set_ylabel("throughput, successful req/s")
    ax.set_title("Throughput vs N: mean and 95% CI per run (dots: trials)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def ratio_figure(data: Mapping) -> Figure:
    """Throughput of each run over the first, per N, with the ratio's 95% CI."""
    fig = Figure(figsize=(7.5, 3.8), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(1.0, color="grey", linewidth=0.8)
    for i, r in enumerate(data["runs"][1:], start=1):
        rows = [x for x in data["ratios"] if x["label"] == r["label"]]
        if not rows:
            continue
        ns, ys = [x["n"] for x in rows], [x["ratio"] for x in rows]
        ax.errorbar(
            ns,
            ys,
            yerr=_yerr(ys, [x["ci"] for x in rows]),
            fmt="o-",
            color=f"C{i}",
            capsize=4,
            label=f"{r['label']} / {data['baseline']}",
        )
    all_n = sorted({p["n"] for r in data["runs"] for p in r["points"]})
    ax.set_xticks(all_n)
    ax.set_xlim(0, max(all_n) + 0.5)
    ax.set_xlabel("replicas N")
    ax.set_ylabel(f"throughput ratio to {data['baseline']}")
    ax.set_title("Ratio of mean throughputs with 95% bootstrap CI (1 = no difference)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def latency_figure(data: Mapping) -> Figure:
    """p99 (solid) and p50 (dotted) vs N per run, log scale; hollow: not valid."""
    fig = Figure(figsize=(7.5, 4.0), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for i, r in enumerate(data["runs"]):
        colour = f"C{i}"
        for key, style in (("p99", "-"), ("p50", ":")):
            pts = [p for p in r["points"] if (p["latency_ms"].get(key) or 0) > 0]
            if not pts:
                continue
            ax.plot(
                [p["n"] for p in pts],
                [p["latency_ms"][key] for p in pts],
                style,
                color=colour,
                label=f"{r['label']} {key}",
            )
            for p in pts:
                ax.plot(
                    p["n"],
                    p["latency_ms"][key],
                    "o",
                    color=colour,
                    markersize=5 if key == "p99" else 3,
                    markerfacecolor=colour if p["valid"] else "white",
                )
    all_n = sorted({p["n"] for r in data["runs"] for p in r["points"]})
    ax.set_xticks(all_n)
    ax.set_xlim(0, max(all_n) + 0.5)
    ax.set_yscale("log")
    ax.set_xlabel("replicas N")
    ax.set_ylabel("response time, ms (log)")
    ax.set_title("Latency per run: p99 (solid) and p50 (dotted), all trials merged", fontsize=9)
    ax.grid(alpha=0.3)
    # Plain numbers (40, 100, 200), not 4 x 10^1: latencies are read, not their exponents.
    ax.yaxis.set_major_formatter(ticker.LogFormatter(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 1)))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


# -- files --------------------------------------------------------------------------------
def load_runs(runs: Sequence[tuple[str, Path]]) -> list[Run]:
    """Read and check every run; CompareError (one line) on anything unusable."""
    if len(runs) < 2:
        raise CompareError(f"compare needs at least 2 runs, got {len(runs)}")
    labels = [label for label, _ in runs]
    if len(set(labels)) != len(labels):
        raise CompareError(f"two runs share a label ({', '.join(labels)}): name them with --label")
    out = []
    for label, path in runs:
        try:
            summary = read_summary(path)
        except RecordError as exc:
            raise CompareError(str(exc)) from None
        if not summary["points"]:
            raise CompareError(f"{path}: no finished points to compare")
        out.append(Run(label, path.resolve(), summary, read_manifest(path)))
    return out


def write_comparison(runs: list[tuple[str, Path]], out: Path) -> Path:
    """Compare runs [(label, run dir)], the first being the baseline, into the new
    directory `out` (never an existing one); returns the path of compare.html."""
    loaded = load_runs(runs)
    data = comparison(loaded)
    return write_files(data, out)


def write_files(data: Mapping, out: Path) -> Path:
    """compare.json, compare.md, compare.html and figures/ into the new directory out."""
    try:
        out.mkdir(parents=True)
    except FileExistsError:
        raise CompareError(f"{out} exists: a comparison is never written over") from None
    figs = {
        "throughput": throughput_figure(data),
        "ratio": ratio_figure(data),
        "latency": latency_figure(data),
    }
    pngs = plot.save_figures(figs, out / "figures")
    (out / "compare.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out / "compare.md").write_text(markdown(data, list(pngs)), encoding="utf-8")
    page = out / "compare.html"
    page.write_text(html(data, pngs, out), encoding="utf-8")
    return page
