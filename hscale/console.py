"""What the user sees: live progress during a sweep and the results table after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(soft_wrap=True)
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


def results_table(summary: dict) -> Table:
    table = Table(
        title=f"hscale {summary['scenario']} on {summary['runtime']}: "
        f"{summary['run_id']} ({summary['status']})"
    )
    for col in ("N", "req/s", "speedup", "efficiency", "p50 ms", "p99 ms", "errors", "valid"):
        table.add_column(col, justify="right")
    for p in summary["points"]:
        lat = p["latency_ms"]
        table.add_row(
            str(p["replicas"]),
            _f(p["throughput_rps"], ".0f"),
            _f(p.get("speedup"), ".2f"),
            _f(p.get("efficiency"), ".2f"),
            _f(lat["p50"], ".1f"),
            _f(lat["p99"], ".1f"),
            f"{p['failures']} ({_f(p['failure_rate'] and p['failure_rate'] * 100, '.2f')}%)",
            "yes" if p["valid"] else "[red]NO[/red]",
        )
    return table


def print_summary(summary: dict, run_path: str) -> None:
    console.print(results_table(summary))
    for p in summary["points"]:
        for note in p["notes"]:
            console.print(f"  N={p['replicas']}: {note}")
    if summary.get("error"):
        console.print(f"[bold]{summary['status']}[/bold]: {summary['error']}")
    if summary.get("leftover_processes"):
        console.print(
            f"[red]killed processes teardown missed:[/red] {summary['leftover_processes']}"
        )
    console.print(f"results: {run_path}")
