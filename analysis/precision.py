"""Precision of the points: the host-speed control variate and pooled confidence intervals.

Control variate. Every trial records the speed probe's work per CPU-millisecond
(hscale/probe.py), an index of how fast the host ran Python during that trial. Host speed
moves throughput of CPU-bound replicas in proportion, so within one N the log-throughput
of a trial is regressed on its log-speed, pooled over every N (one slope, beta: the noise
is the host's, the same at every N). Each trial's throughput is then moved to the run's
mean speed: X_adj = X * (s_mean / s) ** beta. beta is estimated, not assumed, so a probe
that does not track the replicas (beta near 0) changes nothing; the raw figures are kept
beside the adjusted ones.

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

CONFIDENCE = 0.95
MIN_DF_FOR_BETA = 3  # fewer residual degrees of freedom: no adjustment
BETA_BOUNDS = (0.0, 2.0)  # a speed index that moves throughput beyond x**2 is not one


def _t(df: int, confidence: float = CONFIDENCE) -> float:
    # Imported here: scipy.stats takes 0.7 s, and every command's output loads this module.
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, df))


def control_variate(
    trials: Sequence[Mapping], enabled: bool = True, confidence: float = CONFIDENCE
) -> dict:
    """The speed adjustment of a run's trials (each with replicas, throughput_rps and
    host_speed). Returns a record for summary.json: method, beta (with CI), the reference
    speed, the pooled CV before and after, whether it is used and why, and `adjusted`,
    one throughput per trial in input order (the raw one where it is not used)."""
    raw = [float(t["throughput_rps"]) for t in trials]
    out: dict = {
        "method": "control variate: host speed probe, pooled within-N log regression",
        "used": False,
        "reason": None,
        "beta": None,
        "beta_ci": None,
        "reference_speed": None,
        "cv_raw": None,
        "cv_adjusted": None,
        "adjusted": raw,
    }
    cv_raw = pooled_cv(_by_n(trials, raw), fitted=0)
    out["cv_raw"] = None if cv_raw is None else round(cv_raw[0], 5)
    if not enabled:
        out["reason"] = "SPEED_ADJUST=0"
        return out
    speeds = [t.get("host_speed") for t in trials]
    if any(not s or s <= 0 for s in speeds) or any(x <= 0 for x in raw):
        out["reason"] = "not every trial has a host speed reading and a throughput above 0"
        return out
    lx, ls = np.log(raw), np.log(np.asarray(speeds, dtype=float))
    groups: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(trials):
        groups[int(t["replicas"])].append(i)
    dx, ds = np.zeros(len(raw)), np.zeros(len(raw))
    for idx in groups.values():
        dx[idx], ds[idx] = lx[idx] - lx[idx].mean(), ls[idx] - ls[idx].mean()
    df = len(raw) - len(groups) - 1
    if df < MIN_DF_FOR_BETA or float(ds @ ds) <= 0:
        out["reason"] = f"too few repeated trials to fit the speed slope ({max(df, 0)} df)"
        return out
    beta = float(ds @ dx / (ds @ ds))
    se = math.sqrt(float(((dx - beta * ds) ** 2).sum()) / df / float(ds @ ds))
    half = _t(df, confidence) * se
    beta_used = min(max(beta, BETA_BOUNDS[0]), BETA_BOUNDS[1])
    ref = float(np.exp(ls.mean()))
    adjusted = [x * (ref / float(s or 1)) ** beta_used for x, s in zip(raw, speeds, strict=True)]
    cv_adj = pooled_cv(_by_n(trials, adjusted), fitted=1)
    out.update(
        used=True,
        beta=round(beta_used, 4),
        beta_ci=[round(beta - half, 4), round(beta + half, 4)],
        reference_speed=round(ref, 4),
        cv_adjusted=None if cv_adj is None else round(cv_adj[0], 5),
        adjusted=[round(x, 2) for x in adjusted],
    )
    return out


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
        out.append(
            f"host speed: throughputs adjusted with the speed probe (beta {cv['beta']:.2f} "
            f"[{cv['beta_ci'][0]:.2f}, {cv['beta_ci'][1]:.2f}]): trial-to-trial CV "
            f"{cv['cv_raw']:.1%} raw, "
            f"{cv['cv_adjusted']:.1%} adjusted"
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
        out.append(
            f"load generator: {c0['cpu_cores']:.2f} cores at N = {n0}, {c1['cpu_cores']:.2f} "
            f"at N = {n1} ({c1.get('demand_ms') or 0:.3f} ms per request), not taken out "
            "of E(N); against wrk on the 2-vCPU VMs hscale is developed on, E(4) of /json "
            + (
                f"read {SPLIT_BIAS_E4} of wrk's with the replicas on CPUs of their own, "
                f"but packed on one CPU they read E(4) {SPLIT_PACKING_E4} "
                if summary.get("cpu_split")
                else f"read {LOADGEN_BIAS_E4} of wrk's (within 2.5% with CPU_SPLIT=1, which "
                "packs the replicas on one CPU and measures E(N) lower) "
            )
            + "(docs/measurement.md; scripts/loadgen_bias.py measures it on this host)"
        )
    warm = summary.get("warmup_trial")
    if warm and warm.get("throughput_rps") is not None:
        out.append(
            f"warm-up trial at N = {warm['replicas']}: {warm['throughput_rps']:.0f} req/s over "
            f"{warm['seconds']:.0f} s, discarded"
        )
    return out
