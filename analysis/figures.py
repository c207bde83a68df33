"""Figures of one run, from its summary: matplotlib Figures in, no file I/O.

Built with matplotlib's object API (no pyplot state), so nothing leaks between calls and
figures can be made from any thread. analysis.plot saves them; report and compare embed
them. Invalid measurements are drawn hollow everywhere.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hscale.analysis import usl
from hscale.analysis.analyze import measurements_from_summary
from hscale.analysis.scaling import baseline_per_replica

WIDE, TALL = 7.5, 4.5
E_REFERENCE = 0.9  # efficiency at or above this counts as scaling linearly
LATENCIES = {"p50": "p50", "p90": "p90", "p99": "p99", "p99_9": "p99.9", "max": "max"}
TRIAL_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
# Series key: (N, trial) -> (per-second rows {t, requests, failures}, warm-up seconds).
Series = Mapping[tuple[int, int], tuple[Sequence[Mapping], float]]


def _band(
    summary: Mapping, name: str, params: Mapping, xs: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """95% band of the recorded fit: refit the same trials (the band needs the fit's
    covariance or bootstrap draws, which summary.json does not keep). None when the
    refit does not reproduce the recorded parameters, so the band never belongs to
    another curve."""
    try:  # the same measurements hscale.sweep fits: every trial, valid or not
        measured = measurements_from_summary(dict(summary))
        refit = usl.fit([m[0] for m in measured], [m[2] for m in measured])
    except ValueError:
        return None
    again = refit.models[name].params
    if any(
        not math.isclose(again[k], float(params.get(k) or 0.0), rel_tol=1e-3, abs_tol=1e-6)
        for k in ("lambda", "sigma", "kappa")
    ):
        return None
    return usl.band(refit, xs, model=name)


def model_curve(
    summary: Mapping, n_max: float, points: int = 200
) -> tuple[str, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None] | None:
    """(model name, N grid, fitted X(N), 95% band or None) of the chosen model, from the
    parameters recorded in summary["analysis"]. None when there is no fit."""
    analysis = summary.get("analysis")
    if not analysis or not analysis.get("model"):
        return None
    name = analysis["model"]
    params = ((analysis.get("models") or {}).get(name) or {}).get("params") or analysis
    lam, sigma, kappa = (float(params.get(k) or 0.0) for k in ("lambda", "sigma", "kappa"))
    xs = np.linspace(1, max(n_max, 1.0), points)
    curve = usl.throughput(xs, lam, sigma, kappa)
    return name, xs, curve, _band(summary, name, params, xs)


def _figure(width: float = WIDE, height: float = TALL) -> Figure:
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _yerr(values: Sequence[float], cis: Sequence[Sequence[float] | None]) -> np.ndarray:
    """Asymmetric error bars from [lo, hi] intervals; 0 where an interval is missing."""
    err = np.zeros((2, len(values)))
    for i, (v, ci) in enumerate(zip(values, cis, strict=True)):
        if ci is not None:
            err[:, i] = max(v - ci[0], 0.0), max(ci[1] - v, 0.0)
    return err


def interval_line(
    ax: Axes,
    ns: Sequence[float],
    ys: Sequence[float],
    cis: Sequence[Sequence[float] | None],
    **style: object,
) -> None:
    """Values against N with their 95% intervals as error bars (every figure draws its
    intervals this way; `style` is matplotlib's: fmt, color, label...)."""
    ax.errorbar(ns, ys, yerr=_yerr(ys, cis), **{"capsize": 5, **style})  # type: ignore[arg-type]


def _n_axis(ax: Axes, ns: Sequence[int], right: float = 0.5) -> None:
    ax.set_xlabel("replicas N")
    ax.set_xticks(list(ns))
    ax.set_xlim(0, max(ns) + right)
    ax.grid(alpha=0.3)


def _no_data(fig: Figure, text: str) -> Figure:
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="grey")
    return fig


def _trial_colour(k: int) -> str:
    return TRIAL_COLOURS[(k - 1) % len(TRIAL_COLOURS)]


def title(summary: Mapping, manifest: Mapping | None) -> str:
    cfg = (manifest or {}).get("config", {})
    host = (manifest or {}).get("host", {})
    budget = f", {cfg['replica_cpus']:g} CPU/replica" if cfg.get("replica_cpus") else ""
    cpus = f", {host['cpu_count']} host CPUs" if host.get("cpu_count") else ""
    return (
        f"{summary.get('scenario')} on {summary.get('runtime')}{budget}{cpus}\n"
        f"run {summary.get('run_id')} ({summary.get('status')})"
    )


def throughput(summary: Mapping, manifest: Mapping | None = None) -> Figure:
    """(a) Every trial as a dot, per-N mean with its 95% CI, ideal N x X(1), fitted model."""
    fig = _figure()
    points, trials = summary.get("points") or [], summary.get("trials") or []
    if not points:
        return _no_data(fig, "no finished points")
    ax = fig.add_subplot()
    ns = [p["replicas"] for p in points]
    top = max(ns)
    base = baseline_per_replica(points)
    if base is not None:
        ax.plot(
            [0, top + 0.5],
            [0, (top + 0.5) * base[1]],
            "--",
            color="grey",
            label=f"ideal: N x {base[1]:.0f} req/s (per replica at N = {base[0]})",
        )
    per_n = max((p.get("trials") or 1) for p in points)
    for t in trials:
        dx = (t["trial"] - (per_n + 1) / 2) * 0.1  # spread the trials of one N apart
        colour = _trial_colour(t["trial"])
        ax.plot(
            t["replicas"] + dx,
            t["throughput_rps"],
            "o",
            markersize=4,
            color=colour,
            markerfacecolor=colour if t["valid"] else "white",
            alpha=0.8,
        )
    means = [p["throughput_rps"] for p in points]
    cis = [p.get("throughput_ci") for p in points]
    interval_line(ax, ns, means, cis, fmt="none", ecolor="black", linewidth=1.2)
    for p in points:
        ax.plot(
            p["replicas"],
            p["throughput_rps"],
            "_",
            markersize=16,
            color="black",
            markeredgewidth=2 if p["valid"] else 1,
        )
    curve = model_curve(summary, top + 0.5)
    if curve is not None:
        name, xs, ys, band = curve
        ax.plot(xs, ys, "-", color="tab:purple", label=f"fit: {name}")
        if band is not None:
            ax.fill_between(
                xs,
                band[0],
                band[1],
                color="tab:purple",
                alpha=0.15,
                label=f"{name} 95% confidence band",
            )
    ax.plot([], [], "o", color="grey", markersize=4, label="one trial (hollow: not valid)")
    ax.errorbar([], [], yerr=[], fmt="_", color="black", capsize=5, label="mean, 95% CI")
    ax.set_title(title(summary, manifest), fontsize=9)
    ax.set_ylabel("throughput, successful req/s")
    _n_axis(ax, ns)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def efficiency(summary: Mapping) -> Figure:
    """(b) E(N) = S(N)/N with CI bars, the 0.9 reference; E > 1 is flagged, not hidden."""
    fig = _figure(WIDE, 3.8)
    pts = [p for p in summary.get("points") or [] if p.get("efficiency") is not None]
    if len(pts) < 2:
        return _no_data(fig, "efficiency needs at least 2 N")
    ax = fig.add_subplot()
    ns, es = [p["replicas"] for p in pts], [p["efficiency"] for p in pts]
    ax.axhline(
        E_REFERENCE,
        color="tab:green",
        linestyle="--",
        linewidth=1,
        label=f"E = {E_REFERENCE} (scales about linearly above)",
    )
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.axhspan(1.0, max(1.2, max(es) + 0.1), color="tab:red", alpha=0.06)
    cis = [p.get("efficiency_ci") for p in pts]
    interval_line(ax, ns, es, cis, fmt="-", color="tab:blue", linewidth=1)
    for p in pts:
        over = p["efficiency"] > 1
        colour = "tab:red" if over else "tab:blue"
        xy = (p["replicas"], p["efficiency"])
        ax.plot(
            *xy, "o", markersize=7, color=colour, markerfacecolor=colour if p["valid"] else "white"
        )
        if over:
            ax.annotate(
                f"E = {p['efficiency']:.2f} > 1: suspicious",
                xy,
                fontsize=8,
                textcoords="offset points",
                xytext=(6, 6),
                color="tab:red",
            )
    ax.set_ylabel("efficiency E(N) = X(N) / (N X(1))")
    ax.set_title(
        "Efficiency (95% CI); shaded: E > 1, superlinear, check before trusting", fontsize=9
    )
    _n_axis(ax, ns, right=1.0)
    ax.set_ylim(0, max(1.2, max(es) + 0.1))
    ax.legend(fontsize=8, loc="lower left")
    return fig


def karp_flatt(summary: Mapping) -> Figure:
    """(c) Serial fraction e(N): flat means a fixed serial part, rising means overhead grows."""
    fig = _figure(WIDE, 3.5)
    pts = [p for p in summary.get("points") or [] if p.get("karp_flatt") is not None]
    if not pts:
        return _no_data(fig, "Karp-Flatt needs at least 2 N")
    ax = fig.add_subplot()
    ns = [p["replicas"] for p in pts]
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.plot(ns, [p["karp_flatt"] for p in pts], "-", color="tab:blue")
    for p in pts:
        ax.plot(
            p["replicas"],
            p["karp_flatt"],
            "o",
            color="tab:blue",
            markerfacecolor="tab:blue" if p["valid"] else "white",
        )
    ax.set_ylabel("serial fraction e(N)")
    ax.set_title(
        "Karp-Flatt: e = (1/S - 1/N) / (1 - 1/N); rising with N = growing "
        "overhead, below 0 = superlinear",
        fontsize=9,
    )
    _n_axis(ax, [p["replicas"] for p in summary["points"]])
    return fig


def latency(summary: Mapping) -> Figure:
    """(d) Latency percentiles vs N, log scale (from every trial's histogram merged)."""
    fig = _figure(WIDE, 4.0)
    points = summary.get("points") or []
    if not points:
        return _no_data(fig, "no finished points")
    ax = fig.add_subplot()
    for i, (key, label) in enumerate(LATENCIES.items()):
        rows = [(p["replicas"], (p.get("latency_ms") or {}).get(key)) for p in points]
        rows = [(n, v) for n, v in rows if v is not None and v > 0]
        if rows:
            ax.plot(*zip(*rows, strict=True), "o-", color=f"C{i}", label=label, markersize=4)
    ax.set_yscale("log")
    ax.set_ylabel("response time, ms (log)")
    ax.set_title("Latency percentiles per N (all trials merged)", fontsize=9)
    _n_axis(ax, [p["replicas"] for p in points])
    ax.legend(fontsize=8, ncols=5, loc="upper left")
    return fig


def component_groups(components: Mapping[str, Mapping]) -> dict[str, dict]:
    """Replicas as one group (they share the load), other components by name.

    util is cores against the summed budget; no budget counts as one core (a single-
    threaded store or nginx worker), as analysis.aggregate does for the bottleneck.
    """
    out: dict[str, dict] = defaultdict(lambda: {"cores": 0.0, "budget": 0.0, "assumed": False})
    for name, c in components.items():
        g = out["replicas" if c.get("kind") == "replica" else name]
        g["cores"] += c.get("cpu_cores") or 0.0
        g["budget"] += c.get("budget_cpus") or 1.0
        g["assumed"] |= c.get("budget_cpus") is None
    return {name: {**g, "util": g["cores"] / g["budget"]} for name, g in out.items()}


def cpu(summary: Mapping) -> Figure:
    """(e) CPU per component: cores (stacked) and use of budget, bottleneck marked per N."""
    fig = _figure(11, 4.3)
    points = [p for p in summary.get("points") or [] if p.get("components")]
    if not points:
        return _no_data(fig, "no CPU measurements")
    groups = [component_groups(p["components"]) for p in points]
    names = sorted({g for gs in groups for g in gs}, key=lambda g: (g != "replicas", g))
    ns = np.array([p["replicas"] for p in points], dtype=float)
    left, right = fig.subplots(1, 2)
    bottom = np.zeros(len(points))
    for i, name in enumerate(names):
        cores = np.array([gs.get(name, {}).get("cores", 0.0) for gs in groups])
        left.bar(ns, cores, 0.6, bottom=bottom, color=f"C{i}", label=name)
        bottom += cores
    left.set_ylabel("CPU cores used (mean over trials)")
    left.set_title("CPU per component (stacked)", fontsize=9)
    left.legend(fontsize=7, loc="upper left")
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        utils = [gs.get(name, {}).get("util", 0.0) for gs in groups]
        assumed = any(gs.get(name, {}).get("assumed") for gs in groups)
        right.bar(
            ns - 0.4 + width * (i + 0.5),
            utils,
            width,
            color=f"C{i}",
            label=name + (" (vs 1 core)" if assumed else ""),
        )
    right.axhline(1.0, color="black", linewidth=0.8)
    right.axhline(0.9, color="tab:red", linestyle=":", linewidth=0.8)
    labels = []
    for x, p, gs in zip(ns, points, groups, strict=True):
        b = (p.get("bottleneck") or {}).get("component")
        labels.append(f"{int(x)}\n{b or ''}")
        if b in names:
            i = names.index(b)
            right.plot(x - 0.4 + width * (i + 0.5), gs[b]["util"] + 0.05, "v", color="black")
    right.plot([], [], "v", color="black", label="bottleneck")
    right.set_ylabel("utilisation of its CPU budget")
    right.set_title("Use of budget; 1 = saturated, marker = bottleneck", fontsize=9)
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    for ax in (left, right):
        ax.set_xticks(ns, labels, fontsize=8)
        ax.set_xlabel("replicas N (bottleneck)")
        ax.grid(alpha=0.3, axis="y")
    return fig


def series(summary: Mapping, raw: Series) -> Figure:
    """(f) Successful requests per second of every trial; the warm-up is shaded (discarded)."""
    ns = sorted({n for n, _ in raw})
    if not ns:
        return _no_data(_figure(WIDE, 3), "no per-second series (tally.json) found")
    cols = min(4, len(ns))
    rows = math.ceil(len(ns) / cols)
    fig = _figure(2.9 * cols + 0.6, 2.4 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    valid = {(t["replicas"], t["trial"]): t["valid"] for t in summary.get("trials") or []}
    for ax, n in zip(axes, ns, strict=False):
        warm = 0.0
        for (tn, k), (rows_k, warmup_s) in sorted(raw.items()):
            if tn != n or not rows_k:
                continue
            warm = max(warm, warmup_s)
            ts = [r["t"] for r in rows_k]
            ok = [r["requests"] - r.get("failures", 0) for r in rows_k]
            good = valid.get((tn, k), True)
            ax.plot(
                ts,
                ok,
                "-" if good else "--",
                color=_trial_colour(k),
                linewidth=1,
                label=f"t{k}" + ("" if good else " (not valid)"),
            )
        ax.axvspan(0, warm, color="grey", alpha=0.2, linewidth=0)
        ax.set_title(f"N = {n}", fontsize=9)
        ax.set_xlabel("s since start", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[len(ns) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("successful req/s")
    fig.suptitle("Per-second throughput of every trial (grey: warm-up, discarded)", fontsize=9)
    return fig


def run_order(summary: Mapping) -> Figure:
    """(g) Every trial in the order it ran, over its N's mean: as measured and as adjusted,
    with the speed probe's reading and the fitted drift, so the host's noise and what the
    adjustment took out can be seen (analysis/precision.py)."""
    fig = _figure(WIDE, 3.6)
    trials = [t for t in summary.get("trials") or [] if t.get("throughput_rps")]
    if len(trials) < 2:
        return _no_data(fig, "fewer than 2 trials")
    ax = fig.add_subplot()
    seq = np.array([float(t.get("seq", i)) for i, t in enumerate(trials)])
    ns = sorted({t["replicas"] for t in trials})
    adjusted = [t.get("throughput_adj_rps") for t in trials]
    for key, values in (("raw", [t["throughput_rps"] for t in trials]), ("adjusted", adjusted)):
        if any(v is None for v in values):
            continue
        for i, n in enumerate(ns):
            idx = [j for j, t in enumerate(trials) if t["replicas"] == n]
            ys = np.array([values[j] for j in idx]) / np.mean([values[j] for j in idx])
            colour = f"C{i}"
            if key == "raw":
                for j, y in zip(idx, ys, strict=True):
                    face = colour if trials[j]["valid"] else "white"
                    ax.plot(seq[j], y, "o", color=colour, markerfacecolor=face, markersize=5)
                ax.plot([], [], "o", color=colour, label=f"N = {n}")
            else:
                ax.plot(seq[idx], ys, "x", color=colour, markersize=5)
    if all(v is not None for v in adjusted):
        ax.plot([], [], "x", color="grey", label="adjusted")
    speeds = [t.get("host_speed") for t in trials]
    if all(speeds):
        s = np.asarray(speeds, dtype=float)
        ax.plot(seq, s / s.mean(), ":", color="black", linewidth=1, label="host speed (probe)")
    cv = summary.get("precision") or {}
    drift = cv.get("drift_per_trial")
    if drift is not None:
        xs = np.linspace(seq.min(), seq.max(), 50)
        ax.plot(
            xs, np.exp(drift * (xs - seq.mean())), "-", color="tab:grey", linewidth=1.5,
            label=f"fitted drift, {drift:+.2%} a trial",
        )  # fmt: skip
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("trial in the order it ran (seq)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("over its N's mean")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2)
    ax.set_title("Trials in run order: circles as measured (hollow: not valid)", fontsize=9)
    return fig


def run_figures(summary: Mapping, manifest: Mapping | None, raw: Series) -> dict[str, Figure]:
    """Every figure of the report, by file name (without extension), in report order."""
    return {
        "throughput": throughput(summary, manifest),
        "efficiency": efficiency(summary),
        "karp_flatt": karp_flatt(summary),
        "latency": latency(summary),
        "cpu": cpu(summary),
        "series": series(summary, raw),
        "run_order": run_order(summary),
    }


def fault_timeline(
    rows: Sequence[Mapping], warmup_s: float, fault_t: float, label: str,
    pause_s: float | None = None, recovery_s: float | None = None,
) -> Figure:  # fmt: skip
    """A fault trial, second by second: successful and failed requests per second, the
    mean latency on a second axis, the fault marked (and the pause, and the recovery)."""
    fig = _figure(WIDE, 3.2)
    ax = fig.subplots()
    ts = [r["t"] for r in rows]
    ax.plot(ts, [r["requests"] - r["failures"] for r in rows], color="C0", label="ok req/s")
    ax.plot(ts, [r["failures"] for r in rows], color="C3", label="failed req/s")
    ax.axvspan(0, warmup_s, color="grey", alpha=0.2, linewidth=0)
    ax.axvline(fault_t, color="black", linestyle="--", linewidth=1, label=label)
    if pause_s:
        ax.axvspan(fault_t, fault_t + pause_s, color="C1", alpha=0.15, linewidth=0)
    if recovery_s is not None:
        ax.axvline(fault_t + recovery_s, color="C2", linestyle=":", label="recovered")
    ax.set_xlabel("s since start (grey: warm-up, discarded)")
    ax.set_ylabel("requests per second")
    ax.grid(alpha=0.3)
    lat = ax.twinx()
    mean_ms = [math.nan if r.get("mean_ms") is None else r["mean_ms"] for r in rows]
    lat.plot(ts, mean_ms, color="C4", alpha=0.6, linewidth=1)
    lat.set_ylabel("mean latency, ms", color="C4")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(label, fontsize=9)
    return fig
