"""What the user sees: live progress during a sweep and the results table after it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

# Piped or redirected, rich would assume 80 columns and squeeze the table unreadably.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, soft_wrap=True)


@contextmanager
def sweep_progress(total_s: float) -> Iterator:
    """Yields update(text, seconds_done); shows current N and the estimated time left."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("left ~"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    with bar:
        task = bar.add_task("starting", total=total_s)

        def update(text: str, done: float) -> None:
            bar.update(task, description=text, completed=min(done, total_s))

        yield update


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ci(ci: list[float] | None, fmt: str) -> str:
    return "-" if ci is None else f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def results_table(summary: dict) -> Table:
    # Imported here, as in print_summary: the analysis loads scipy (0.7 s), which a usage
    # error, or any command that prints no table, should not wait for.
    from hscale.analysis.verdict import verdict_efficiency

    load = summary.get("load") or {}
    cv = summary.get("precision") or {}
    slopes = (("beta", "host speed"), ("drift_per_trial", "time"))
    to = [what for key, what in slopes if cv.get(key) is not None]
    adjusted = f" adjusted to the run's mean {' and '.join(to)}" if cv.get("used") and to else ""
    model = "closed loop" if load.get("model") != "rate" else f"{load['rate_rps']:g} req/s offered"
    table = Table(
        title=f"hscale {summary['scenario']} on {summary['runtime']}, {model}: "
        f"{summary['run_id']} ({summary['status']})",
        caption=f"req/s: mean of trials{adjusted}, 95% CI from the noise pooled over N; "
        "raw: as measured; E: efficiency S(N)/N with its CI, of the trials the fit uses; "
        "latency over all trials, * where "
        "the CPU quota's stall dominates it; thr: share of CFS periods throttled; bottleneck: "
        "the component nearest its CPU budget",
    )
    cols = ("N", "trials", "req/s", "95% CI", "raw", "CV", "E", "95% CI", "p50 ms", "p99 ms")
    for col in (*cols, "thr", "errors", "bottleneck", "valid"):
        table.add_column(col, justify="right")
    analysis = summary.get("analysis") or {}
    for p in summary["points"]:
        lat, neck, cv = p["latency_ms"], p.get("bottleneck"), p["throughput_cv"]
        eff, eff_ci = verdict_efficiency(p, analysis)
        throttling = p.get("throttling") or {}
        marked = throttling.get("dominated_percentiles") or []
        share = throttling.get("throttled_period_share")
        table.add_row(
            str(p["replicas"]),
            str(p["trials"]),
            _f(p["throughput_rps"], ".0f"),
            _ci(p["throughput_ci"], ".0f"),
            _f(p.get("throughput_raw_rps"), ".0f"),
            "-" if cv is None else f"{cv:.1%}",
            _f(eff, ".2f"),
            _ci(eff_ci, ".2f"),
            _f(lat["p50"], ".1f") + ("*" if "p50" in marked else ""),
            _f(lat["p99"], ".1f") + ("*" if "p99" in marked else ""),
            "-" if share is None else f"{share:.0%}",
            f"{p['failures']} ({_f(p['failure_rate'] and p['failure_rate'] * 100, '.2f')}%)",
            "-" if not neck else f"{neck['component']} {neck['util_of_budget']:.0%}",
            "yes" if p["valid"] else "[red]NO[/red]",
        )
    return table


def print_summary(summary: dict, run_path: str) -> None:
    from hscale.analysis import precision

    console.print(results_table(summary))
    for p in summary["points"]:
        for note in p["notes"]:
            console.print(
                f"  N={p['replicas']} [red]invalid[/red]: {escape(note)}", highlight=False
            )
        for note in p.get("warnings", []):
            console.print(
                f"  N={p['replicas']} [yellow]note[/yellow]: {escape(note)}", highlight=False
            )
    checked = summary.get("consistency")
    if checked:
        if checked["consistent"]:
            console.print("consistency: the store's state matches what was acknowledged")
        for problem in checked["problems"]:
            console.print(f"[red]inconsistent[/red]: {escape(problem)}", highlight=False)
    for line in precision.describe(summary):
        console.print(line, highlight=False)
    analysis = summary.get("analysis")
    if analysis:
        console.print(f"\n[bold]verdict[/bold]: {analysis['verdict']}", highlight=False)
    elif summary.get("analysis_error"):
        console.print(f"no scaling fit: {escape(summary['analysis_error'])}", highlight=False)
    if summary.get("error"):
        # Errors carry log tails: "[/...]" in them must print as text, not markup.
        console.print(f"[bold]{summary['status']}[/bold]: {escape(summary['error'])}")
    if summary.get("leftover_processes"):
        console.print(
            f"[red]killed processes teardown missed:[/red] {summary['leftover_processes']}"
        )
    console.print(f"results: {run_path}")
