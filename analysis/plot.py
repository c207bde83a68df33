"""Figures from computed results (the one module of analysis/ that writes files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402

from analysis.scaling import baseline_per_replica  # noqa: E402


def throughput_plot(summary: dict, manifest: dict, path: Path) -> Path:
    """Measured throughput vs N against the ideal line N x X(1); invalid points hollow."""
    points = summary["points"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ns = [p["replicas"] for p in points]
    base = baseline_per_replica(points)
    if base is not None:
        top = max(ns)
        ax.plot(
            [0, top],
            [0, top * base[1]],
            "--",
            color="grey",
            label=f"ideal: N x {base[1]:.0f} req/s (per-replica rate at N = {base[0]})",
        )
    ax.plot(ns, [p["throughput_rps"] for p in points], "-", color="tab:blue", alpha=0.5)
    for p in points:
        ax.plot(
            p["replicas"],
            p["throughput_rps"],
            "o",
            markersize=8,
            color="tab:blue",
            markerfacecolor="tab:blue" if p["valid"] else "white",
        )
        if p.get("efficiency") is not None:
            ax.annotate(
                f"E={p['efficiency']:.2f}",
                (p["replicas"], p["throughput_rps"]),
                textcoords="offset points",
                xytext=(6, -12),
                fontsize=8,
            )
    ax.plot([], [], "o", color="tab:blue", label="measured (valid)")
    if not all(p["valid"] for p in points):
        ax.plot(
            [],
            [],
            "o",
            color="tab:blue",
            markerfacecolor="white",
            label="measured (NOT valid, see summary notes)",
        )
    cfg, host = manifest["config"], manifest["host"]
    ax.set_title(
        f"{summary['scenario']} on {summary['runtime']}: {cfg['replica_cpus']:g} CPU/replica, "
        f"{host['cpu_count']} host CPUs\nrun {summary['run_id']} ({summary['status']})",
        fontsize=9,
    )
    ax.set_xlabel("replicas N")
    ax.set_ylabel("throughput, successful req/s")
    ax.set_xticks(ns)
    ax.set_xlim(0, max(ns) + 0.5)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
