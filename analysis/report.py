"""The report of a run, regenerated from its files without re-running load.

Pure: turns a summary and manifest (and the figures' PNG bytes) into report.md and the
self-contained report.html (figures as data: URIs, inline CSS, no fetches).
report_files reads the run and writes them.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from hscale.analysis import consistency, precision
from hscale.analysis.verdict import verdict_efficiency

TEMPLATES = Path(__file__).parent / "templates"
CAPTIONS = {
    "throughput": "Throughput vs N: every trial (dots; hollow = not valid), per-N mean with its "
    "95% CI, the ideal line N x X(1) and the fitted model with its 95% confidence band.",
    "efficiency": "Efficiency E(N) with 95% CI; E >= 0.9 is about linear, E > 1 is flagged.",
    "karp_flatt": "Karp-Flatt serial fraction e(N).",
    "latency": "Latency percentiles per N, log scale.",
    "cpu": "CPU per component: cores used and share of budget; the bottleneck is marked.",
    "series": "Per-second throughput of every trial; the shaded warm-up is not measured.",
    "run_order": "Every trial in the order it ran, over its N's mean: circles as measured "
    "(hollow = not valid), crosses as adjusted, the speed probe's reading (dotted) and the "
    "fitted drift (line). What moves every N alike is the host, not the app.",
}
# Knobs that define a measurement, in the order `make bench` takes them (ports and the
# results directory are where it ran, not what was measured).
REPRO_KNOBS = (
    "app", "app_module", "image", "app_container_port", "app_init", "health_path", "locustfile",
    "runtime", "scenario", "store", "sweep", "trials", "ci_target", "max_trials", "load", "rate",
    "duration", "warmup", "users", "users_per_replica", "loadgen_workers", "replica_cpus",
    "replica_memory", "workers", "worker_class", "threads", "ballast", "balance_host",
)  # fmt: skip
MISSING = "–"


# -- formatting ---------------------------------------------------------------------------
def num(value: float | None, digits: int = 3) -> str:
    """Three significant digits, but whole numbers stay whole (1234, not 1.23e+03)."""
    if value is None:
        return MISSING
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def fixed(value: float | None, places: int = 2) -> str:
    return MISSING if value is None else f"{value:.{places}f}"


def with_ci(
    value: float | None, interval: Sequence[float] | None, fmt: Callable[[float | None], str] = num
) -> str:
    if not interval:
        return fmt(value)
    return f"{fmt(value)} [{fmt(interval[0])}, {fmt(interval[1])}]"


def pct(value: float | None) -> str:
    return MISSING if value is None else f"{value:.0%}"


def count(value: int | None) -> str:
    return MISSING if value is None else f"{value:,}"


def share(value: float | None) -> str:
    """A share that stays readable when small: 37%, 6.7%, <0.1%."""
    if value is None:
        return MISSING
    if value == 0 or value >= 0.1:
        return f"{value:.0%}"
    return f"{value:.1%}" if value >= 0.001 else "<0.1%"


def bottleneck(point: Mapping) -> str:
    b = point.get("bottleneck")
    if not b:
        return MISSING
    # No quota of its own (the store, nginx): judged against one core, and so said.
    of = "one core" if b.get("budget_assumed") and b.get("budget_cpus") == 1 else "budget"
    return f"{b['component']} ({pct(b.get('util_of_budget'))} of {of})"


# -- tables -------------------------------------------------------------------------------
TABLE_NOTE = (
    "req/s: adjusted to the run's mean host speed where the run did so (raw: as measured); "
    "* marks a latency percentile that the CPU quota's stall dominates; throttled: share of "
    "the replicas' CFS periods that ended throttled."
)


def point_rows(summary: Mapping) -> list[dict[str, Any]]:
    """One row per N, formatted: the table of report.md and of the HTML page."""
    rows = []
    analysis = summary.get("analysis") or {}
    for p in summary.get("points") or []:
        lat = p.get("latency_ms") or {}
        marked = (p.get("throttling") or {}).get("dominated_percentiles") or []
        eff, eff_ci = verdict_efficiency(p, analysis)
        rows.append(
            {
                "n": p["replicas"],
                "trials": p.get("trials"),
                "throughput": with_ci(p["throughput_rps"], p.get("throughput_ci")),
                "cv": pct(p.get("throughput_cv")),
                "efficiency": with_ci(eff, eff_ci, fixed),
                "superlinear": eff is not None and eff > 1,
                "karp_flatt": fixed(p.get("karp_flatt"), 3),
                "raw": num(p.get("throughput_raw_rps")),
                "latency": " / ".join(
                    num(lat.get(k)) + ("*" if k in marked else "") for k in ("p50", "p99")
                ),
                "throttled": share((p.get("throttling") or {}).get("throttled_period_share")),
                "bottleneck": bottleneck(p),
                "valid": p.get("valid", False),
            }
        )
    return rows


def validity_rows(summary: Mapping) -> list[dict[str, Any]]:
    """Per N: every trial (valid, reasons, warnings), then the point's own notes."""
    trials = summary.get("trials") or []
    rows = []
    for p in summary.get("points") or []:
        n = p["replicas"]
        for t in sorted((t for t in trials if t["replicas"] == n), key=lambda t: t["trial"]):
            rows.append(
                {
                    "n": n,
                    "trial": t["trial"],
                    "seq": t.get("seq"),
                    "throughput": num(t.get("throughput_rps")),
                    "valid": t.get("valid", False),
                    "reasons": list(t.get("notes") or []),
                    "warnings": list(t.get("warnings") or []),
                }
            )
        own = [note for note in p.get("notes") or [] if not note.startswith("trial ")]
        bad = [str(t["trial"]) for t in trials if t["replicas"] == n and not t.get("valid")]
        if bad and not p.get("valid", False):  # the reasons are on the trial rows above
            own.append(f"trial(s) {', '.join(bad)} not valid")
        rows.append(
            {
                "n": n,
                "trial": "all",
                "seq": None,
                "throughput": num(p.get("throughput_rps")),
                "valid": p.get("valid", False),
                "reasons": own,
                "warnings": [w for w in p.get("warnings") or [] if not w.startswith("trial ")],
            }
        )
    return rows


def retried_rows(summary: Mapping) -> list[str]:
    """Trials measured again with more Locust workers; the first attempt stays on disk."""
    return [
        f"N = {r.get('replicas')} trial {r.get('trial')} ({r.get('raw')}): "
        + "; ".join(r.get("notes") or ["no reason recorded"])
        for r in summary.get("retried_trials") or []
    ]


def model_rows(analysis: Mapping | None) -> list[dict[str, Any]]:
    """One row per fitted model: parameters with CIs, R^2, AICc, and which was chosen."""
    if not analysis:
        return []
    rows = []
    for name, m in (analysis.get("models") or {}).items():
        params, cis = m.get("params") or {}, m.get("ci") or {}
        row = {"name": name, "chosen": name == analysis.get("model")}
        for key in ("lambda", "sigma", "kappa"):
            held = key not in cis  # the model holds it at 0
            row[key] = "0 (fixed)" if held else with_ci(params.get(key), cis.get(key))
        row["r_squared"] = num(m.get("r_squared"), 4)
        row["aicc"] = num(m.get("aicc"), 4)
        rows.append(row)
    return rows


def model_line(analysis: Mapping | None, error: str | None = None) -> str:
    """One sentence: the chosen model, its parameters, the peak and how far to trust it."""
    if not analysis or not analysis.get("model"):
        return f"No scaling fit: {error or 'it needs trials at 2 or more distinct N'}."
    name = analysis["model"]
    free = ((analysis.get("models") or {}).get(name) or {}).get("ci") or {}
    parts = [f"Model: {name}"]
    for key, sym in (("lambda", "λ"), ("sigma", "σ"), ("kappa", "κ")):
        if key in free and analysis.get(key) is not None:  # not one the model holds at 0
            parts.append(f"{sym} = {with_ci(analysis[key], analysis.get(f'{key}_ci'))}")
    parts.append(f"R² = {num(analysis.get('r_squared'), 4)}")
    text = ", ".join(parts)
    peak = _usl_peak(analysis)
    if peak[0] is not None:
        where = " (extrapolated beyond the measured N)" if peak[2] else ""
        text += f"; peak N* = {num(peak[0])} at {num(peak[1])} req/s{where}"
        if name != "usl":  # the peak comes from the USL fit, which the data did not choose
            text += ", from the USL fit, which the F test did not accept: tentative"
    if analysis.get("linear_up_to") is not None:
        text += f"; about linear (E CI >= 0.9) up to N = {analysis['linear_up_to']}"
    if analysis.get("weak_fit"):
        text += f". Weak fit: {analysis['weak_fit']}"
    return text + "."


def _usl_peak(analysis: Mapping) -> tuple[Any, Any, Any]:
    """(N*, X(N*), extrapolated) of the USL fit, chosen or not; older analyses had them
    only as peak_*."""
    if "usl_peak_n" in analysis:
        keys = ("usl_peak_n", "usl_peak_throughput", "usl_peak_extrapolated")
    else:
        keys = ("peak_n", "peak_throughput", "peak_extrapolated")
    peak_n, peak_x, extrapolated = (analysis.get(k) for k in keys)
    return peak_n, peak_x, extrapolated


def fit_rows(analysis: Mapping | None) -> list[tuple[str, str]]:
    """Peak, extrapolation, linear range and the weak-fit note, as label/value pairs."""
    if not analysis:
        return []
    peak_n, peak_x, extrapolated = _usl_peak(analysis)
    peak = num(peak_n)
    if peak_x is not None:
        peak += f" at {num(peak_x)} req/s"
    return [
        ("peak N* = sqrt((1 - σ) / κ) of the USL fit", peak),
        (
            "peak extrapolated",
            {True: "yes: outside the measured N", False: "no"}.get(extrapolated, MISSING),
        ),
        ("linear up to (E CI ≥ 0.9)", num(analysis.get("linear_up_to"))),
        ("weak fit", analysis.get("weak_fit") or "no"),
    ]


# -- consistency ---------------------------------------------------------------------------
CONSISTENCY_KINDS = tuple(consistency.READ_KINDS)  # "kv", "session"


def consistency_ok(checked: Mapping | None) -> bool | None:
    """True or False from a run's consistency summary; None when nothing was checked (an
    older summary, no finished trial, or a scenario with no counter or own-write reads)."""
    if not checked or not checked.get("trials"):
        return None
    if not any(k in checked for k in ("counter", *CONSISTENCY_KINDS)):
        return None
    return bool(checked.get("consistent"))


def consistency_line(checked: Mapping | None, target: Mapping | None = None) -> str:
    """The run's verdict on its shared state, with the numbers either way."""
    if target and not target.get("consistency_checked", True):
        return (
            "Not checked: the consistency check reads the reference app's own endpoints "
            "(/counter, /kv, /session), which this app does not have."
        )
    if not checked:
        return "Not checked: this run's summary has no consistency check of the shared state."
    trials = checked.get("trials") or 0
    if not trials:
        return "Not checked yet: no finished trial."
    if consistency_ok(checked) is None:
        return (
            f"Nothing to check in {trials} trial(s): the load incremented no counter and read "
            "none of its own writes."
        )
    if not checked.get("consistent"):
        bad = checked.get("inconsistent_trials")
        return (
            f"Not consistent in {bad} of {trials} trial(s): "
            + "; ".join(checked.get("problems") or ["no problem recorded"])
            + "."
        )
    parts = []
    c = checked.get("counter")
    if c:
        sent = f"{c['acknowledged']:,} of {c['attempts']:,} increments acknowledged"
        if c.get("delta") is None:
            parts.append(f"counter: {sent}; it was not read before and after every trial")
        else:
            parts.append(
                f"the counter rose by {c['delta']:,} with {sent} (acknowledged <= rise <= sent)"
                + (", the same through every replica" if c.get("replicas_agree") else "")
            )
    for kind in CONSISTENCY_KINDS:
        r = checked.get(kind)
        if r:
            parts.append(f"{kind}: none of {r['reads']:,} reads of own writes missing or stale")
    return f"Consistent in all {trials} trial(s): " + "; ".join(parts) + "."


def _by_replica(c: Mapping) -> str:
    """Whether the replicas read the same counter; if not, what each counted (or says)."""
    agree = c.get("replicas_agree")
    if agree is None:
        return "not read"
    if agree:
        return "yes"
    deltas = c.get("by_replica_delta")
    values = deltas or c.get("by_replica_after") or {}
    sign = "+" if deltas else "= "
    return "no: " + ", ".join(f"{r} {sign}{v:,}" for r, v in sorted(values.items()))


def _bad_reads(reads: Mapping, what: str) -> str:
    n = reads.get(what) or 0
    return f"{n:,} ({share(reads.get(f'{what}_share'))})" if n else "0"


def consistency_table(summary: Mapping) -> tuple[list[str], list[dict[str, Any]]]:
    """(header, rows) of the per-trial check, with columns only for what the run checked;
    each row is {"cells", "consistent" (None: not checked), "problems"}."""
    trials = sorted(summary.get("trials") or [], key=lambda t: (t["replicas"], t["trial"]))
    judged = [t.get("consistency") or {} for t in trials]
    counter = any("counter" in j for j in judged)
    kinds = [k for k in CONSISTENCY_KINDS if any(k in j for j in judged)]
    header = ["N", "trial", "consistent"]
    if counter:
        header += [
            "counter attempts",
            "acknowledged",
            "delta",
            "acknowledged ≤ delta ≤ attempts",
            "replicas agree (delta by replica)",
        ]
    for kind in kinds:
        header += [f"{kind} reads", f"{kind} missing", f"{kind} stale"]
    rows = []
    for t, j in zip(trials, judged, strict=True):
        ok = j.get("consistent") if j else None
        cells = [
            str(t["replicas"]),
            str(t["trial"]),
            "not checked" if ok is None else ("yes" if ok else "no"),
        ]
        if counter:
            c = j.get("counter")
            if c:
                bound = {True: "yes", False: "no"}.get(c.get("bound_ok"), "not checked")
                cells += [
                    count(c["attempts"]), count(c["acknowledged"]), count(c.get("delta")), bound,
                    _by_replica(c),
                ]  # fmt: skip
            else:
                cells += [MISSING] * 5
        for kind in kinds:
            r = j.get(kind)
            cells += (
                [count(r["reads"]), _bad_reads(r, "missing"), _bad_reads(r, "stale")]
                if r
                else [MISSING] * 3
            )
        rows.append({"cells": cells, "consistent": ok, "problems": list(j.get("problems") or [])})
    return header, rows


def meta(summary: Mapping) -> list[str]:
    """The page's subtitle: what ran, where, how, when."""
    load, plan = summary.get("load") or {}, summary.get("trial_plan") or {}
    rate = f" at {load['rate_rps']:g} req/s" if load.get("rate_rps") else ""
    out = [
        f"scenario {summary.get('scenario')}",
        f"runtime {summary.get('runtime')} ({summary.get('cpu_limits') or '?'})",
    ]
    if load:
        out.append(f"load {load.get('model')}{rate}")
    if plan:
        out.append(f"{plan.get('trials')} trial(s) per N")
    out.append(f"{summary.get('started_at')} to {summary.get('ended_at') or '?'}")
    return out


def _flat(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(", ", ": "), default=str)
    return MISSING if value is None else str(value)


def manifest_rows(manifest: Mapping) -> list[tuple[str, list[tuple[str, str]]]]:
    """(section, [(key, value)]) for the manifest table: nested values flattened."""
    run = {k: manifest.get(k) for k in ("run_id", "command", "started_at", "ended_at", "status")}
    git = manifest.get("git") or {}
    run["git"] = f"{git.get('sha') or MISSING}{' (dirty)' if git.get('dirty') else ''}"
    sections = [("run", run)]
    sections += [(k, manifest.get(k) or {}) for k in ("versions", "host", "runtime", "config")]
    return [(name, [(k, _flat(v)) for k, v in d.items()]) for name, d in sections]


def reproduce_command(manifest: Mapping) -> str:
    """`make bench` with every knob the run used, so the same measurement can be made."""
    cfg = manifest.get("config") or {}
    runtime = (manifest.get("runtime") or {}).get("name")
    args = []
    for key in REPRO_KNOBS:
        value = runtime if key == "runtime" and runtime else cfg.get(key)
        if value is None or (key == "app_container_port" and not cfg.get("image")):
            continue
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, (list, tuple)):
            value = " ".join(map(str, value))
        elif isinstance(value, float):
            value = f"{value:g}"
        args.append(f"{key.upper()}={shlex.quote(str(value))}")
    return " ".join(["make bench", *args])


def machine_line(manifest: Mapping) -> str:
    host, rt = manifest.get("host") or {}, manifest.get("runtime") or {}
    versions = manifest.get("versions") or {}
    git = manifest.get("git") or {}
    sha = (git.get("sha") or "")[:12] + (" (dirty)" if git.get("dirty") else "")
    return (
        f"{host.get('cpu_model', '?')}, {host.get('cpu_count', '?')} CPUs, "
        f"{host.get('memory_gib', '?')} GiB, kernel {host.get('kernel', '?')}; runtime "
        f"{rt.get('name', '?')} ({rt.get('cpu_limits', '?')}); Python "
        f"{versions.get('python', '?')}, locust {versions.get('locust', '?')}; "
        f"git {sha or '?'}"
    )


def verdict(summary: Mapping) -> str:
    analysis = summary.get("analysis")
    if analysis and analysis.get("verdict"):
        return analysis["verdict"]
    if summary.get("analysis_error"):
        return f"No verdict: the scaling fit failed ({summary['analysis_error']})."
    n = len(summary.get("points") or [])
    return f"No verdict: {n} N measured, a scaling fit needs at least 2."


def headline(summary: Mapping) -> str:
    return (
        f"hscale run {summary.get('run_id')} ({summary.get('status')}): "
        f"{summary.get('scenario')} on {summary.get('runtime')}"
    )


# -- documents ----------------------------------------------------------------------------
def markdown(summary: Mapping, manifest: Mapping, figure_names: Sequence[str]) -> str:
    """report.md: verdict, table per N, model, how to reproduce, machine, figure links."""
    lines = [f"### {headline(summary)}", "", verdict(summary), ""]
    if consistency_ok(summary.get("consistency")) is False:  # wrong results come first
        lines += [f"**{consistency_line(summary['consistency'])}**", ""]
    if summary.get("error"):
        lines += [f"**{summary['status']}**: {summary['error']}", ""]
    lines += [
        "| N | trials | req/s, mean [95% CI] | raw req/s | E [95% CI] | p50 / p99 ms "
        "| throttled | bottleneck | valid |",
        "|---:|---:|---|---:|---|---|---:|---|---|",
    ]
    for r in point_rows(summary):
        e = r["efficiency"] + (" ⚠ E > 1" if r["superlinear"] else "")
        lines.append(
            f"| {r['n']} | {r['trials']} | {r['throughput']} | {r['raw']} | {e} | "
            f"{r['latency']} | {r['throttled']} | {r['bottleneck']} | "
            f"{'yes' if r['valid'] else '**no**'} |"
        )
    lines += [
        "",
        TABLE_NOTE,
        "",
        *(f"{line}  " for line in precision.describe(summary)),
        "",
        model_line(summary.get("analysis"), summary.get("analysis_error")),
        "",
        *consistency_markdown(summary),
        f"Reproduce: `{reproduce_command(manifest)}`",
        "",
        f"Machine: {machine_line(manifest)}",
        "",
        "Figures: " + " · ".join(f"[{n}](figures/{n}.png)" for n in figure_names),
        "",
    ]
    return "\n".join(lines)


def consistency_markdown(summary: Mapping) -> list[str]:
    """The Consistency section of report.md: the run's verdict, then a row per trial."""
    checked = summary.get("consistency")
    lines = ["#### Consistency", "", consistency_line(checked, summary.get("target")), ""]
    header, rows = consistency_table(summary)
    if consistency_ok(checked) is None or not rows:
        return lines
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [f"**{c}**" if c == "no" else c for c in r["cells"]]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES, encoding="utf-8"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def html(summary: Mapping, manifest: Mapping, pngs: Mapping[str, bytes]) -> str:
    """report.html: one page, every figure embedded."""
    analysis = summary.get("analysis") or {}
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            title=headline(summary),
            status=summary.get("status"),
            error=summary.get("error"),
            meta=meta(summary),
            verdict=verdict(summary),
            figures=[
                {"name": name, "src": data_uri(png), "caption": CAPTIONS.get(name, name)}
                for name, png in pngs.items()
            ],
            points=point_rows(summary),
            table_note=TABLE_NOTE,
            precision_lines=precision.describe(summary),
            validity=validity_rows(summary),
            models=model_rows(analysis),
            model_line=model_line(analysis, summary.get("analysis_error")),
            retried=retried_rows(summary),
            consistency=consistency_line(summary.get("consistency"), summary.get("target")),
            consistency_ok=consistency_ok(summary.get("consistency")),
            consistency_table=consistency_table(summary),
            fit=fit_rows(analysis),
            manifest=manifest_rows(manifest),
            reproduce=reproduce_command(manifest),
            machine=machine_line(manifest),
        )
    )
