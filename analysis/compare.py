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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis import plot, report, stats

SCHEMA_VERSION = 1  # of compare.json
MISSING = report.MISSING
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
            }
            for p in s.get("points") or []
        ],
        "model": analysis.get("model"),
        "usl": {
            "sigma": params.get("sigma"),
            "sigma_ci": cis.get("sigma"),
            "kappa": params.get("kappa"),
            "kappa_ci": cis.get("kappa"),
            "lambda": params.get("lambda"),
            "lambda_ci": cis.get("lambda"),
            "peak_n": analysis.get("peak_n"),
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
    return {
        "schema_version": SCHEMA_VERSION,
        "baseline": numbers[0]["label"],
        "runs": numbers,
        "ratios": ratios,
        "notes": _differences(runs),
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


def markdown(data: Mapping, figure_names: Sequence[str]) -> str:
    header, rows = table_rows(data)
    lines = [f"### hscale compare: {', '.join(r['label'] for r in data['runs'])}", ""]
    lines += [
        f"- **{r['label']}**: run {r['run_id']} ({r['status']}), {r['scenario']} on {r['runtime']}"
        for r in data["runs"]
    ]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "USL fit per run (σ contention, κ coherency, 95% CI):", ""]
    for u in usl_rows(data):
        lines.append(
            f"- {u['label']}: chosen model {u['model']}; σ = {u['sigma']}, "
            f"κ = {u['kappa']}, peak N* = {u['peak_n']}"
        )
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
        file = path / "summary.json"
        if not file.is_file():
            raise CompareError(f"{path} is not a run directory (no summary.json)")
        try:
            summary = json.loads(file.read_text("utf-8"))
        except ValueError as exc:
            raise CompareError(f"{file}: not JSON ({exc})") from None
        version = summary.get("schema_version")
        if version != report.SCHEMA_VERSION:
            raise CompareError(
                f"{file}: schema_version {version}, compare reads {report.SCHEMA_VERSION}"
            )
        if not summary.get("points"):
            raise CompareError(f"{path}: no finished points to compare")
        mf = path / "manifest.json"
        manifest = json.loads(mf.read_text("utf-8")) if mf.is_file() else {}
        out.append(Run(label, path.resolve(), summary, manifest))
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
    figs = {"throughput": throughput_figure(data), "ratio": ratio_figure(data)}
    pngs = plot.save_figures(figs, out / "figures")
    (out / "compare.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out / "compare.md").write_text(markdown(data, list(pngs)), encoding="utf-8")
    page = out / "compare.html"
    page.write_text(html(data, pngs, out), encoding="utf-8")
    return page
