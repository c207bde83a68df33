"""Saving figures (analysis.figures draws them): PNG for pages, SVG for print and zoom."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

from matplotlib.figure import Figure

from hscale.analysis import figures

# No creation date in the SVG, so redrawing the same run gives the same file.
METADATA = {"png": {}, "svg": {"Date": None}}


def render(fig: Figure, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata=METADATA[fmt])
    return buf.getvalue()


def save_figures(figs: Mapping[str, Figure], directory: Path) -> dict[str, bytes]:
    """Write <name>.png and <name>.svg of each figure; returns the PNG bytes by name."""
    directory.mkdir(parents=True, exist_ok=True)
    pngs = {}
    for name, fig in figs.items():
        pngs[name] = render(fig, "png")
        (directory / f"{name}.png").write_bytes(pngs[name])
        (directory / f"{name}.svg").write_bytes(render(fig, "svg"))
    return pngs


def throughput_plot(summary: dict, manifest: dict, path: Path) -> Path:
    """Throughput vs N (the report's first figure) as one PNG, e.g. the run's throughput.png."""
    path.write_bytes(render(figures.throughput(summary, manifest), "png"))
    return path
