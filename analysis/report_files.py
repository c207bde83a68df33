"""The report's files: reads a run directory and writes report.html, report.md,
figures/<name>.png + .svg and throughput.png into it (report.py makes the text)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hscale.analysis import figures, plot
from hscale.analysis.record import read_manifest, read_summary
from hscale.analysis.report import html, markdown


def load_run(run_dir: Path) -> tuple[dict, dict, figures.Series]:
    """summary.json, manifest.json ({} if missing) and each trial's per-second series.

    Raises RecordError (a ValueError, one line) for a summary.json that is not a run
    record of this schema_version.
    """
    summary = read_summary(run_dir)
    manifest = read_manifest(run_dir)
    series = {}
    for t in summary.get("trials") or []:
        # The raw tally first (the source); the copy in summary.json if it is gone.
        tally = run_dir / t.get("raw", "") / "tally.json"
        raw = json.loads(tally.read_text("utf-8")) if t.get("raw") and tally.is_file() else t
        if raw.get("series"):
            warmup = raw.get("warmup_s", t.get("warmup_s")) or 0.0
            series[(t["replicas"], t["trial"])] = (raw["series"], warmup)
    return summary, manifest, series


def write_report(run_dir: Path) -> Path:
    """Write report.html, report.md, figures/ and throughput.png into run_dir; returns the
    path of report.html. Earlier report files are replaced (they are derived data)."""
    summary, manifest, series = load_run(run_dir)
    pngs = plot.save_figures(figures.run_figures(summary, manifest, series), run_dir / "figures")
    if "throughput" in pngs:  # `hscale plot` and older links expect it at the run's root
        (run_dir / "throughput.png").write_bytes(pngs["throughput"])
    _write(run_dir / "report.md", markdown(summary, manifest, list(pngs)))
    out = run_dir / "report.html"
    _write(out, html(summary, manifest, pngs))
    return out


def _write(path: Path, text: str) -> None:
    """Via a temporary file and rename: a browser never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
