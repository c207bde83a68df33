"""Precision of the points: the host-speed and drift control variates, pooled intervals.

Control variates. Every trial records the speed probe's work per CPU-millisecond
(hscale/probe.py), an index of how fast the host ran Python during that trial. Host speed
moves throughput of CPU-bound replicas in proportion, so within one N the log-throughput
of a trial is regressed on its log-speed, pooled over every N (one slope, beta: the noise
is the host's, the same at every N). Beside it, a slow drift through the run (the host
speeding up or slowing down over minutes, which the probe under its small quota does not
always see) is a linear trend in trial order, fitted in the same regression; the
interleaved order (1 2 3 4 4 3 2 1) keeps it apart from N. Each trial's throughput is then
moved to the run's mean speed and mean time: X_adj = X * (s_mean / s) ** beta *
exp(-d * (seq - seq_mean)). Both slopes are estimated, not assumed, so a covariate that
does not track the replicas changes nothing; the raw figures are kept beside.

Pooled intervals. With 2 to 5 trials per N, a per-N bootstrap under-covers badly (about
80% for a nominal 95% at 3 trials) and a per-N t interval is very wide (t = 4.3 at 3
trials). The relative noise of a trial is the host's, not the N's, so the coefficient of
variation is pooled over all N (df = trials - distinct N - 1 if beta was fitted), and each
N's interval is mean * (1 +- t(df) * cv / sqrt(n)). Efficiency E(N) = X(N)/N / X(b)/b gets
the log-normal interval exp(+- t * cv * sqrt(1/n_N + 1/n_b)).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from hscale.analysis import loadgen_check

CONFIDENCE = 0.95
MIN_DF_FOR_BETA = 3  # fewer residual degrees of freedom: no adjustment
BETA_BOUNDS = (0.0, 2.0)  # a speed index that moves throughput beyond x**2 is not one


def _t(df: float, confidence: float = CONFIDENCE) -> float:
    # Imported here: scipy.stats takes 0.7 s, and every command's output loads this module.
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, df))


def control_variate(
    trials: Sequence[Mapping],
    enabled: bool = True,
    drift: bool = True,
    confidence: float = CONFIDENCE,
) -> dict:
    """The adjustment of a run's trials (each with replicas, throughput_rps, host_speed and
    seq) for what moves every N alike: the host's speed (the probe's reading) and a slow
    drift through the run (a linear trend in trial order; the interleaved order keeps it
    apart from N). One least-squares fit of log-throughput on both within each N, pooled
    over every N. Returns a record for summary.json: method, the covariates used, beta
    (with CI) and the reference speed, the drift per trial (with CI), how many slopes were
    fitted, the pooled CV before and after, whether it is used and why not, and
    `adjusted`, one throughput per trial in input order (the raw one where it is not)."""
    raw = [float(t["throughput_rps"]) for t in trials]
    out: dict = {
        "method": "control variates: host speed probe and drift in trial order, pooled "
        "within-N log regression",
        "used": False,
        "reason": None,
        "covariates": [],
        "fitted": 0,
        "beta": None,
        "beta_ci": None,
        "reference_speed": None,
        "drift_per_trial": None,
        "drift_ci": None,
        "cv_raw": None,
        "cv_adjusted": None,
        "adjusted": raw,
    }
    cv_raw = pooled_cv(_by_n(trials, raw), fitted=0)
    out["cv_raw"] = None if cv_raw is None else round(cv_raw[0], 5)
    columns, reasons = _covariates(trials, enabled, drift)
    if any(x <= 0 for x in raw):
        columns, reasons = {}, ["a trial's throughput is 0"]
    groups: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(trials):
        groups[int(t["replicas"])].append(i)

    def within(values: np.ndarray) -> np.ndarray:
        centred = np.zeros(len(values))
        for idx in groups.values():
            centred[idx] = values[idx] - values[idx].mean()
        return centred

    centred = {k: within(v) for k, v in columns.items()}
    columns = {k: v for k, v in columns.items() if float(centred[k] @ centred[k]) > 0}
    # Too few degrees of freedom for every slope: the drift goes first, then the speed.
    while columns and len(raw) - len(groups) - len(columns) < MIN_DF_FOR_BETA:
        dropped = list(columns)[-1]
        del columns[dropped]
        df = len(raw) - len(groups) - len(columns) - 1
        reasons.append(f"too few repeated trials to fit the {dropped} slope ({max(df, 0)} df)")
    if not columns:
        out["reason"] = "; ".join(reasons) or "nothing to adjust for"
        return out
    names = list(columns)
    design = np.column_stack([centred[k] for k in names])
    dx = within(np.log(raw))
    df = len(raw) - len(groups) - len(names)
    fit, half = _slopes(design, dx, df, confidence)
    coef = fit.copy()
    if "host speed" in names:  # a slope beyond the bounds is held there, the rest refitted
        i = names.index("host speed")
        beta = min(max(coef[i], BETA_BOUNDS[0]), BETA_BOUNDS[1])
        if beta != coef[i]:
            rest = [j for j in range(len(names)) if j != i]
            coef[i] = beta
            if rest:
                coef[rest] = _slopes(design[:, rest], dx - beta * design[:, i], df, confidence)[0]
    shift = sum(c * (columns[k] - columns[k].mean()) for k, c in zip(names, coef, strict=True))
    adjusted = [x * math.exp(-float(d)) for x, d in zip(raw, shift, strict=True)]
    cv_adj = pooled_cv(_by_n(trials, adjusted), fitted=len(names))
    out.update(
        used=True,
        reason="; ".join(reasons) or None,
        covariates=names,
        fitted=len(names),
        cv_adjusted=None if cv_adj is None else round(cv_adj[0], 5),
        adjusted=[round(x, 2) for x in adjusted],
    )
    for k, c, f, h in zip(names, coef, fit, half, strict=True):
        interval = [round(float(f - h), 4), round(float(f + h), 4)]
        if k == "host speed":
            ref = float(np.exp(columns[k].mean()))
            out.update(beta=round(float(c), 4), beta_ci=interval, reference_speed=round(ref, 4))
        else:
            out.update(drift_per_trial=round(float(c), 5), drift_ci=interval)
    return out


def _covariates(
    trials: Sequence[Mapping], speed: bool, drift: bool
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The covariates a run has, in the order they are kept (log host speed, trial order),
    and why any is left out."""
    columns: dict[str, np.ndarray] = {}
    reasons = []
    speeds = [t.get("host_speed") for t in trials]
    if not speed:
        reasons.append("SPEED_ADJUST=0")
    elif any(not s or s <= 0 for s in speeds):
        reasons.append("not every trial has a host speed reading")
    else:
        columns["host speed"] = np.log(np.asarray(speeds, dtype=float))
    if drift:  # seq counts every trial the run started; older records: their order here
        columns["drift"] = np.array([float(t.get("seq", i)) for i, t in enumerate(trials)])
    else:
        reasons.append("DRIFT_ADJUST=0")
    return columns, reasons


def _slopes(
    design: np.ndarray, y: np.ndarray, df: int, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slopes of within-N centred y on within-N centred columns, and their
    CI half-widths at `df` (the trials less one per N less one per slope)."""
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    cov = float(resid @ resid) / df * np.linalg.inv(design.T @ design)
    return coef, _t(df, confidence) * np.sqrt(np.diag(cov))


def _by_n(trials: Sequence[Mapping], values: Sequence[float]) -> dict[int, list[float]]:
    by_n: dict[int, list[float]] = defaultdict(list)
    for t, x in zip(trials, values, strict=True):
        by_n[int(t["replicas"])].append(x)
    return by_n


def pooled_cv(by_n: Mapping[int, Sequence[float]], fitted: int = 0) -> tuple[float, int] | None:
    """(CV, degrees of freedom) pooled over N: each trial's deviation from its N's mean,
    relative to that mean. `fitted` counts parameters estimated beyond the N means (1 when
    the speed slope was fitted). None without a degree of freedom."""
    ss, m = 0.0, 0
    for xs in by_n.values():
        x = np.asarray(xs, dtype=float)
        if x.size == 0 or x.mean() <= 0:
            continue
        ss += float((((x / x.mean()) - 1.0) ** 2).sum())
        m += x.size - 1
    df = m - fitted
    if df < 1:
        return None
    return math.sqrt(ss / df), df


def mean_ci(
    values: Sequence[float], cv: float, df: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The mean's interval with the pooled relative noise."""
    x = float(np.mean(values))
    half = _t(df, confidence) * cv / math.sqrt(len(values)) * x
    return x - half, x + half


def ratio_ci(
    n_num: int, n_den: int, ratio: float, cv: float, df: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Interval of mean(num) / mean(den) from n_num and n_den trials, log-normal."""
    half = _t(df, confidence) * cv * math.sqrt(1 / n_num + 1 / n_den)
    return ratio * math.exp(-half), ratio * math.exp(half)


def welch_ratio_ci(
    ratio: float,
    n_num: int,
    noise_num: tuple[float, int],
    n_den: int,
    noise_den: tuple[float, int],
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Interval of mean(num) / mean(den) when the two means come from different runs,
    each with its own pooled relative noise (cv, df): log-normal, the variances added and
    the degrees of freedom by Welch-Satterthwaite, so a quiet run and a noisy one are not
    taken to share one noise."""
    (cv_n, df_n), (cv_d, df_d) = noise_num, noise_den
    v_n, v_d = cv_n**2 / n_num, cv_d**2 / n_den
    if v_n + v_d <= 0:
        return ratio, ratio
    df = (v_n + v_d) ** 2 / (v_n**2 / df_n + v_d**2 / df_d)
    half = _t(df, confidence) * math.sqrt(v_n + v_d)
    return ratio * math.exp(-half), ratio * math.exp(half)


def trials_needed(cv: float, df: int, target: float, confidence: float = CONFIDENCE) -> int:
    """Trials of one N for its CI half-width to reach `target` (a share of the mean) at
    this noise, the t quantile taken at the degrees of freedom there are now."""
    if target <= 0:
        return 0
    return max(2, math.ceil((_t(max(df, 1), confidence) * cv / target) ** 2))


# hscale's E(4) over wrk's on one stack, on two VMs of the same kind (scripts/loadgen_bias.py,
# docs/measurement.md, 2026-11-30): the load-generator bias, stated wherever E(N) is.
LOADGEN_BIAS_E4 = "1.10 [1.03, 1.17], 0.88 [0.81, 0.95] and 1.10 to 1.27 on three"
SPLIT_BIAS_E4 = "1.01 [0.96, 1.07] on docker, 1.02 and 0.99 on local"
SPLIT_PACKING_E4 = "0.81 and 0.84 on docker against 0.93 and 0.98 not split"


def describe(summary: Mapping) -> list[str]:
    """What precision the sweep reached and how: the control variate and the stop."""
    out = []
    cv = summary.get("precision") or {}
    if cv.get("used"):
        by = []
        if cv.get("beta") is not None:
            lo, hi = cv["beta_ci"]
            by.append(f"the speed probe (beta {cv['beta']:.2f} [{lo:.2f}, {hi:.2f}])")
        if cv.get("drift_per_trial") is not None:
            lo, hi = cv["drift_ci"]
            by.append(f"a drift of {cv['drift_per_trial']:+.2%} a trial [{lo:+.2%}, {hi:+.2%}]")
        out.append(
            f"host speed: throughputs adjusted for {' and '.join(by)}: trial-to-trial CV "
            f"{cv['cv_raw']:.1%} raw, {cv['cv_adjusted']:.1%} adjusted"
        )
    elif cv.get("reason"):
        out.append(f"host speed: raw throughputs ({cv['reason']})")
    st = summary.get("precision_status") or {}
    halves = {n: h for n, h in (st.get("ci_half_widths") or {}).items() if h is not None}
    if st.get("ci_target") and halves:
        worst = max(halves, key=lambda n: halves[n])
        took = f"{st['elapsed_s'] / 60:.1f} min of sweep"
        if st.get("reached"):
            out.append(
                f"precision: every N's 95% CI within +-{st['ci_target']:.0%} (widest "
                f"+-{halves[worst]:.1%} at N = {worst}) after {took}"
            )
        else:
            out.append(
                f"precision: target +-{st['ci_target']:.0%} not reached ({st.get('stopped_by')}"
                f"): widest +-{halves[worst]:.1%} at N = {worst} after {took}"
            )
    loadgen = [
        (p["replicas"], (p.get("components") or {}).get("loadgen"))
        for p in summary.get("points") or []
    ]
    loadgen = [(n, c) for n, c in loadgen if c and c.get("cpu_cores") is not None]
    if len(loadgen) >= 2:
        (n0, c0), (n1, c1) = loadgen[0], loadgen[-1]
        c0, c1 = c0 or {}, c1 or {}  # not None: filtered above
        head = (
            f"load generator: {c0['cpu_cores']:.2f} cores at N = {n0}, {c1['cpu_cores']:.2f} "
            f"at N = {n1} ({c1.get('demand_ms') or 0:.3f} ms per request), not taken out "
            "of E(N); "
        )
        check = summary.get("loadgen_check")
        if check:
            out.append(
                head + f"on this host `hscale loadgen-check` ({check['run_id']}, "
                f"/json, N = 1 and {check['replicas']}) measured " + loadgen_check.describe(check)
            )
        else:
            out.append(
                head
                + "against wrk on the 2-vCPU VMs hscale is developed on, E(4) of /json "
                + (
                    f"read {SPLIT_BIAS_E4} of wrk's with the replicas on CPUs of their own, "
                    f"but packed on one CPU they read E(4) {SPLIT_PACKING_E4} "
                    if summary.get("cpu_split")
                    else f"read {LOADGEN_BIAS_E4} of wrk's (within 2.5% with CPU_SPLIT=1, "
                    "which packs the replicas on one CPU and measures E(N) lower) "
                )
                + "(docs/measurement.md; `make loadgen-check` measures it on this host)"
            )
    warm = summary.get("warmup_trial")
    if warm and warm.get("throughput_rps") is not None:
        out.append(
            f"warm-up trial at N = {warm['replicas']}: {warm['throughput_rps']:.0f} req/s over "
            f"{warm['seconds']:.0f} s, discarded"
        )
    return out
