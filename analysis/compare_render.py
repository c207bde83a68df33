"""A comparison's tables, Markdown, HTML page and figures, from compare.comparison()'s
data. Pure: nothing here reads or writes a file."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib import ticker
from matplotlib.figure import Figure

from hscale.analysis import report
from hscale.analysis.compare import MISSING, SATURATED, of_budget, point_at, ranking
from hscale.analysis.figures import interval_line


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
            p = point_at(r, n)
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
    util = of_budget(sc["util"], sc["budget_cpus"], sc["budget_assumed"])
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


def throughput_figure(data: Mapping) -> Figure:
    """Every run's per-N mean with its 95% CI (hollow: not valid) and its trials, overlaid."""
    fig = Figure(figsize=(7.5, 4.5), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for i, r in enumerate(data["runs"]):
        pts, colour = r["points"], f"C{i}"
        ns, xs = [p["n"] for p in pts], [p["throughput_rps"] for p in pts]
        cis = [p["throughput_ci"] for p in pts]
        interval_line(ax, ns, xs, cis, fmt="-", color=colour, capsize=4, label=r["label"])
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
        label = f"{r['label']} / {data['baseline']}"
        cis = [x["ci"] for x in rows]
        interval_line(ax, ns, ys, cis, fmt="o-", color=f"C{i}", capsize=4, label=label)
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
