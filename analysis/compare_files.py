"""A comparison's files: read the runs (through record.read_summary), write compare.json,
compare.md, compare.html and figures/ into a new directory, never an existing one."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from hscale.analysis import plot
from hscale.analysis.compare import CompareError, Run, comparison
from hscale.analysis.compare_render import (
    html,
    latency_figure,
    markdown,
    ratio_figure,
    throughput_figure,
)
from hscale.analysis.record import RecordError, read_manifest, read_summary


def new_compare_id() -> str:
    """Time-sortable and unique, like a run id."""
    return f"compare-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


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
