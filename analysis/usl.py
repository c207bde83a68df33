"""Universal Scalability Law fits of throughput X against replica count N.

    X(N) = lambda * N / (1 + sigma * (N - 1) + kappa * N * (N - 1))

Three nested models are fitted to every trial as one point (repeats at the same N give the
fit its sense of noise): linear (sigma = kappa = 0), Amdahl (kappa = 0) and the full USL.
lambda, the throughput of one replica, is fitted rather than divided out, so a noisy X(1)
does not skew sigma and kappa (the R package `usl` fits the same scale, as "gamma").

Bounded least squares keeps the parameters physical: lambda > 0, 0 <= sigma <= 1,
0 <= kappa <= 1. Parameter CIs come from the covariance with a t quantile; where a
parameter sits on a bound, or the covariance is singular, the covariance says nothing
useful and a wild bootstrap over the points gives percentile intervals instead.

The model is chosen among the nested linear < Amdahl < USL by extra-sum-of-squares F
tests, which stay exact with a handful of points where AICc's small-sample penalty swamps
the fit: F = ((SSE_simple - SSE_rich) / (df_simple - df_rich)) / (SSE_rich / df_rich),
and p < 0.05 accepts the richer model. Amdahl is tested against linear; if accepted, the
USL against Amdahl, else the USL against linear directly (2 extra parameters), so a pure
coherency curve is not missed. No test is possible with zero residual dof or fewer
distinct N than parameters, and a richer fit whose extra parameter sits at 0 on its
bound is the simpler model: in each case the simpler model stays, with the reason.
Every test's F and p is kept in ModelFit.selection.

A model that cannot fall must not describe data that fall: when the mean throughput at
the largest N is below the highest per-N mean at a smaller N by more than a one-sided
95% noise bound (pooled within-N spread; without repeats, the USL residuals; with
neither, a drop of more than 5%), and the USL fit has kappa > 0, the USL is chosen even
if its F test did not accept it (UslFit.chosen_by = "decline").

The peak N* = sqrt((1 - sigma) / kappa) always comes from the USL fit, the only model with
one; it is None when that fit's kappa is 0. When the chosen model is not "usl" the peak
is an extrapolation of a coherency cost the data do not support, and callers should say
so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import optimize, stats

MODELS = ("linear", "amdahl", "usl")
FREE = {"linear": ("lambda",), "amdahl": ("lambda", "sigma"), "usl": ("lambda", "sigma", "kappa")}
# The parameter a model adds to the one below it: at 0 on its bound, the fit is that model.
EXTRA = {"amdahl": "sigma", "usl": "kappa"}
UPPER = {"lambda": np.inf, "sigma": 1.0, "kappa": 1.0}
# Closer than this to 0 counts as on the bound: kappa = 1e-9 would put N* beyond 30,000.
ON_BOUND = 1e-9
ALPHA = 0.05  # F test level: p below it accepts the richer model
DECLINE_RATIO = 0.05  # with no way to estimate noise, a drop this large counts
MIN_DISTINCT_N = 6  # GUIDE section 3: with fewer, sigma and kappa are poorly determined
# 200 refits of <= 3 parameters stay well under 2 s for 20 points; percentile bounds from
# 200 draws move by a few percent of the interval width between seeds, ample for a verdict.
BOOT_DRAWS = 200
SEED = 0


def throughput(
    n: np.ndarray | Sequence[float], lam: float, sigma: float = 0.0, kappa: float = 0.0
) -> np.ndarray:
    """X(N) of the USL (Amdahl with kappa = 0, linear with sigma = kappa = 0)."""
    n = np.asarray(n, dtype=float)
    return lam * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))


def _gradient(n: np.ndarray, p: dict[str, float], names: Sequence[str]) -> np.ndarray:
    """dX/d(free parameters), one row per N: used for the Jacobian and the delta method."""
    d = 1.0 + p["sigma"] * (n - 1.0) + p["kappa"] * n * (n - 1.0)
    cols = {
        "lambda": n / d,
        "sigma": -p["lambda"] * n * (n - 1.0) / d**2,
        "kappa": -p["lambda"] * n**2 * (n - 1.0) / d**2,
    }
    return np.column_stack([cols[k] for k in names])


@dataclass(frozen=True)
class ModelFit:
    name: str
    params: dict[str, float]  # lambda, sigma, kappa; 0.0 for those the model fixes
    # Standard errors from the covariance, also at a bound (R's usl reports them there
    # too); None where the covariance is singular or the model fixes the parameter.
    se: dict[str, float | None]
    ci: dict[str, tuple[float, float] | None]  # fitted parameters only
    # "t" (covariance), "bootstrap" (a parameter on a bound or a singular covariance), or
    # None: no residual dof, or fewer distinct N than parameters (not identifiable).
    ci_method: str | None
    r_squared: float | None
    sse: float
    aicc: float | None
    dof: int
    cov: np.ndarray | None = field(default=None, repr=False)  # of the free parameters
    draws: np.ndarray | None = field(default=None, repr=False)  # bootstrap (B, free)
    # The F test of this model against the simpler one it was weighed against; None for
    # linear, the simplest.
    selection: Selection | None = None

    @property
    def free(self) -> tuple[str, ...]:
        return FREE[self.name]


@dataclass(frozen=True)
class Selection:
    """Whether a richer model was accepted over a simpler one nested in it, and why."""

    against: str  # the simpler model
    test: str | None  # "F" (extra sum of squares), None when no test was possible
    f: float | None  # inf when the richer fit is exact and the simpler one is not
    p: float | None
    df: tuple[int, int] | None  # (extra parameters, residual dof of the richer fit)
    accepted: bool
    reason: str


@dataclass(frozen=True)
class Decline:
    """Measured throughput falling past its maximum by more than its noise."""

    from_n: int  # the smaller N with the highest mean throughput
    to_n: int  # the largest N
    drop: float  # mean X(from_n) - mean X(to_n)
    drop_ratio: float  # drop / mean X(from_n)
    noise_bound: float | None  # one-sided 95% bound of a drop from noise; None: 5% rule
    noise: str  # how the bound was estimated


@dataclass(frozen=True)
class UslFit:
    models: dict[str, ModelFit]
    model: str  # the one the data supports
    n_points: int
    distinct_n: int
    n_min: int
    n_max: int
    peak_n: float | None
    peak_throughput: float | None
    peak_extrapolated: bool | None
    weak_fit: str | None
    confidence: float
    chosen_by: str  # "F test", "decline" or "simplest" (no richer model accepted)
    reason: str  # why `model`, in words
    measured_max: tuple[int, float]  # (N, mean throughput) of the highest per-N mean
    decline: Decline | None  # None unless a decline beyond noise is measured

    @property
    def chosen(self) -> ModelFit:
        return self.models[self.model]


def _params(name: str, values: Sequence[float] | np.ndarray) -> dict[str, float]:
    p = {"lambda": 0.0, "sigma": 0.0, "kappa": 0.0}
    p.update(zip(FREE[name], (float(v) for v in values), strict=True))
    return p


def _least_squares(
    name: str,
    n: np.ndarray,
    x: np.ndarray,
    starts: Sequence[Sequence[float] | np.ndarray],
    tol: float = 1e-14,
) -> optimize.OptimizeResult:
    """Best of a few bounded trust-region fits (the USL surface can have shallow valleys)."""
    names = FREE[name]
    upper = [UPPER[k] for k in names]

    def residuals(v: np.ndarray) -> np.ndarray:
        return throughput(n, **_kw(_params(name, v))) - x

    def jac(v: np.ndarray) -> np.ndarray:
        return _gradient(n, _params(name, v), names)

    best = None
    for start in starts:
        x0 = np.clip(np.asarray(start[: len(names)], dtype=float), 0.0, upper)
        res = optimize.least_squares(
            residuals,
            x0,
            jac=jac,
            bounds=([0.0] * len(names), upper),
            method="trf",
            x_scale="jac",  # lambda ~ 1e3 and kappa ~ 1e-4 in one problem
            ftol=tol,
            xtol=tol,
            gtol=tol,
            max_nfev=2000,
        )
        if best is None or res.cost < best.cost:
            best = res
    return best


def _kw(p: dict[str, float]) -> dict[str, float]:
    return {"lam": p["lambda"], "sigma": p["sigma"], "kappa": p["kappa"]}


def _on_bound(name: str, values: np.ndarray) -> np.ndarray:
    names = FREE[name]
    return np.array(
        [
            v <= ON_BOUND * (k != "lambda") or v >= UPPER[k] - ON_BOUND
            for k, v in zip(names, values, strict=True)
        ]
    )


def _covariance(jac: np.ndarray, sse: float, dof: int) -> np.ndarray | None:
    """s^2 (J'J)^-1, or None when J is rank-deficient or there is no residual dof."""
    if dof <= 0:
        return None
    _, s, vt = np.linalg.svd(jac, full_matrices=False)
    if s.size == 0 or s[-1] <= s[0] * 1e-10:
        return None
    return (sse / dof) * (vt.T / s**2) @ vt


def _aicc(sse: float, m: int, k: int, scale: float) -> float | None:
    """AICc for Gaussian least squares; K counts the noise variance as a parameter."""
    big_k = k + 1
    if m - big_k - 1 <= 0:
        return None
    # An exact fit has SSE 0 and log(0) = -inf; flooring at a relative 1e-9 residual
    # keeps AICc finite and makes two exact fits compare equal.
    floor = m * (1e-9 * scale) ** 2
    return float(
        m * np.log(max(sse, floor) / m) + 2 * big_k + 2 * big_k * (big_k + 1) / (m - big_k - 1)
    )


def _fit_model(
    name: str, n: np.ndarray, x: np.ndarray, confidence: float, bootstrap: bool = True
) -> ModelFit:
    lam0 = _lambda_start(n, x)
    kappa_scale = 1.0 / max(float(n.max()), 2.0) ** 2
    starts: list[tuple[float, ...]] = [
        (lam0, s0, k0) for s0 in (0.02, 0.3) for k0 in (1e-3 * kappa_scale, 0.1 * kappa_scale)
    ]
    if name != "usl":  # kappa does not vary: drop duplicate starts
        starts = list(dict.fromkeys(tuple(s[: len(FREE[name])]) for s in starts))
    res = _least_squares(name, n, x, starts)
    names = FREE[name]
    values = np.array(res.x, dtype=float)
    bound = _on_bound(name, values) | (np.asarray(res.active_mask) != 0)
    values = np.where(bound & (values < 0.5), 0.0, values)  # snap to the bound it sits on
    p = _params(name, values)
    fitted = throughput(n, **_kw(p))
    resid = x - fitted
    sse = float(resid @ resid)
    m, k = len(x), len(names)
    dof = m - k
    # Fewer distinct N than parameters: a whole curve of parameter values fits equally
    # well, so no CI (or AICc, which would let the model be chosen) means anything.
    identifiable = np.unique(n).size >= k
    cov = _covariance(_gradient(n, p, names), sse, dof) if identifiable else None
    se: dict[str, float | None] = {key: None for key in ("lambda", "sigma", "kappa")}
    if cov is not None:
        se.update({key: float(np.sqrt(max(cov[i, i], 0.0))) for i, key in enumerate(names)})
    ci: dict[str, tuple[float, float] | None] = {key: None for key in names}
    draws = None
    method: str | None = None
    if dof > 0 and cov is not None and not bound.any():
        t = float(stats.t.ppf(0.5 + confidence / 2, dof))
        for key in names:
            half = t * (se[key] or 0.0)  # not None: cov is
            lo, hi = p[key] - half, p[key] + half
            ci[key] = (max(lo, 0.0), min(hi, UPPER[key]))  # the parameter space is bounded
        method = "t"
    elif dof > 0 and identifiable and bootstrap:
        draws = _bootstrap(name, n, fitted, resid, values, dof)
        tail = 100 * (1 - confidence) / 2
        for i, key in enumerate(names):
            lo, hi = np.percentile(draws[:, i], [tail, 100 - tail])
            ci[key] = (float(lo), float(hi))
        method = "bootstrap"
    sst = float(np.sum((x - x.mean()) ** 2))
    return ModelFit(
        name=name,
        params=p,
        se=se,
        ci=ci,
        ci_method=method,
        r_squared=None if sst == 0 else 1.0 - sse / sst,
        sse=sse,
        aicc=_aicc(sse, m, k, float(np.mean(np.abs(x)))) if identifiable else None,
        dof=dof,
        cov=cov,
        draws=draws,
    )


def _lambda_start(n: np.ndarray, x: np.ndarray) -> float:
    """Per-replica throughput at the smallest N: lambda exactly when that N is 1."""
    first = n == n.min()
    lam0 = float(np.mean(x[first]) / n.min())
    return lam0 if lam0 > 0 else float(np.max(x / n))


def _bootstrap(
    name: str, n: np.ndarray, fitted: np.ndarray, resid: np.ndarray, start: np.ndarray, dof: int
) -> np.ndarray:
    """Parameter draws from a wild bootstrap: y* = fit + r_i * (+-1).

    Each residual stays at its own N, so noise that grows with throughput is kept where
    it was, and no N drops out of a resample (case resampling could leave too few
    distinct N to fit). Residuals are inflated by sqrt(m / dof) for the fitted parameters.
    """
    rng = np.random.default_rng(SEED)
    scaled = resid * np.sqrt(len(resid) / dof)
    out = np.empty((BOOT_DRAWS, len(FREE[name])))
    for b in range(BOOT_DRAWS):
        y = fitted + scaled * rng.choice((-1.0, 1.0), size=len(resid))
        out[b] = _least_squares(name, n, y, [start], tol=1e-8).x  # percentiles need less
    shape = np.array([k != "lambda" for k in FREE[name]])
    return np.where(shape & (out <= ON_BOUND), 0.0, out)  # trf stops a hair inside bounds


def fit(
    n: Sequence[float], x: Sequence[float], confidence: float = 0.95, bootstrap: bool = True
) -> UslFit:
    """Fit linear, Amdahl and USL models to (N, throughput) points, one per trial.

    bootstrap=False leaves the CIs of a fit on a bound empty instead of bootstrapping them:
    for simulation studies, as the model choice never uses CIs.
    """
    n_arr, x_arr = np.asarray(n, dtype=float), np.asarray(x, dtype=float)
    if n_arr.shape != x_arr.shape or n_arr.ndim != 1:
        raise ValueError("n and x must be 1-d sequences of the same length")
    if n_arr.size == 0 or np.any(n_arr < 1) or np.any(x_arr < 0):
        raise ValueError("need N >= 1 and throughput >= 0 for every point")
    distinct = int(np.unique(n_arr).size)
    if distinct < 2:
        raise ValueError(f"need at least 2 distinct N to fit a scaling model, got {distinct}")
    if np.max(x_arr) <= 0:
        raise ValueError("every throughput is 0: nothing to fit")
    models = {name: _fit_model(name, n_arr, x_arr, confidence, bootstrap) for name in MODELS}
    models, chosen, reason = _select(models, distinct, float(np.mean(np.abs(x_arr))))
    chosen_by = "simplest" if chosen == "linear" else "F test"
    usl = models["usl"]
    measured_max, decline = _decline(n_arr, x_arr, usl, distinct)
    if decline is not None and chosen != "usl" and usl.params["kappa"] > 0:
        # Only the USL can fall: a model without kappa would promise throughput the
        # measurements already show is not there.
        sel = usl.selection
        f_said = f"p = {sel.p:.2g}" if sel and sel.p is not None else (sel.reason if sel else "")
        reason = (
            f"measured decline past N = {decline.from_n}: mean throughput falls "
            f"{decline.drop_ratio:.1%} by N = {decline.to_n}, beyond its noise, and only the "
            f"USL can fall (its F test alone: {f_said})"
        )
        chosen, chosen_by = "usl", "decline"
    peak_n = peak_x = extrapolated = None
    if usl.params["kappa"] > 0 and distinct >= len(FREE["usl"]):
        peak_n = float(np.sqrt((1.0 - usl.params["sigma"]) / usl.params["kappa"]))
        peak_x = float(throughput([peak_n], **_kw(usl.params))[0])
        extrapolated = not (n_arr.min() <= peak_n <= n_arr.max())
    return UslFit(
        models=models,
        model=chosen,
        n_points=int(n_arr.size),
        distinct_n=distinct,
        n_min=int(n_arr.min()),
        n_max=int(n_arr.max()),
        peak_n=peak_n,
        peak_throughput=peak_x,
        peak_extrapolated=extrapolated,
        weak_fit=_weak(distinct, int(n_arr.size)),
        confidence=confidence,
        chosen_by=chosen_by,
        reason=reason,
        measured_max=measured_max,
        decline=decline,
    )


def f_test(simple: ModelFit, rich: ModelFit, distinct: int, scale: float) -> Selection:
    """Extra-sum-of-squares F test of `rich` against `simple`, nested in it.

    scale (mean |X|) sets the floor below which an SSE counts as an exact fit, so two
    exact fits compare equal instead of dividing rounding noise by rounding noise.
    """
    against, name = simple.name, rich.name

    def keep(why: str) -> Selection:  # no test possible: the simpler model stays
        return Selection(against, None, None, None, None, False, why)

    k = len(FREE[name])
    if distinct < k:
        return keep(f"{distinct} distinct N cannot identify the {k} {name} parameters")
    if rich.dof <= 0:
        return keep(f"no residual degrees of freedom: no test possible, {against} stays")
    extra = EXTRA[name]
    if rich.params[extra] <= ON_BOUND:
        # The richer fit sits on the simpler model's boundary: it *is* a simpler model.
        below = "amdahl" if name == "usl" else "linear"
        return keep(f"{extra} = 0 on its bound: the {name} fit is the {below} model")
    df1 = simple.dof - rich.dof
    floor = (simple.dof + len(FREE[against])) * (1e-9 * scale) ** 2  # m (1e-9 X)^2
    gain = simple.sse - rich.sse
    if gain <= floor:
        f, p_value = 0.0, 1.0
    elif rich.sse <= floor:
        f, p_value = float("inf"), 0.0
    else:
        f = (gain / df1) / (rich.sse / rich.dof)
        p_value = float(stats.f.sf(f, df1, rich.dof))
    accepted = p_value < ALPHA
    reason = f"F test against {against}: F({df1}, {rich.dof}) = {f:.3g}, p = {p_value:.2g} " + (
        "< 0.05, accepted" if accepted else ">= 0.05, not accepted"
    )
    return Selection(against, "F", f, p_value, (df1, rich.dof), accepted, reason)


def _select(
    models: dict[str, ModelFit], distinct: int, scale: float
) -> tuple[dict[str, ModelFit], str, str]:
    """Step up linear -> Amdahl -> USL by F tests; USL straight from linear when Amdahl is
    not accepted (a pure coherency curve need not look like contention first).

    Returns the models with their `selection` set, the chosen name and why.
    """
    amdahl = f_test(models["linear"], models["amdahl"], distinct, scale)
    base = "amdahl" if amdahl.accepted else "linear"
    usl = f_test(models[base], models["usl"], distinct, scale)
    out = dict(models)
    out["amdahl"] = replace(models["amdahl"], selection=amdahl)
    out["usl"] = replace(models["usl"], selection=usl)
    if usl.accepted:
        return out, "usl", f"usl: {usl.reason}"
    if amdahl.accepted:
        return out, "amdahl", f"amdahl: {amdahl.reason}; usl: {usl.reason}"
    return out, "linear", f"no richer model accepted (amdahl: {amdahl.reason}; usl: {usl.reason})"


def _decline(
    n: np.ndarray, x: np.ndarray, usl: ModelFit, distinct: int
) -> tuple[tuple[int, float], Decline | None]:
    """The highest per-N mean, and a Decline when the largest N's mean falls below the
    highest mean at a smaller N by more than a one-sided 95% bound of noise."""
    ns = np.unique(n)
    idx = np.searchsorted(ns, n)
    counts = np.bincount(idx, minlength=ns.size)
    means = np.bincount(idx, weights=x, minlength=ns.size) / counts
    top = int(np.argmax(means))
    measured_max = (int(ns[top]), float(means[top]))
    i = int(np.argmax(means[:-1]))  # the highest mean below the largest N
    peak, last = float(means[i]), float(means[-1])
    drop = peak - last
    if drop <= 0:
        return measured_max, None
    within_dof = int(n.size - ns.size)
    bound: float | None = None
    if within_dof > 0 and np.all(means > 0):
        # Pooled relative to each N's mean: throughput noise grows with throughput, and
        # the two means compared sit at the top of the curve.
        s_rel = float(np.sqrt(np.sum((x / means[idx] - 1.0) ** 2) / within_dof))
        se = s_rel * np.sqrt(peak**2 / counts[i] + last**2 / counts[-1])
        bound, noise = float(stats.t.ppf(0.95, within_dof) * se), "pooled within-N spread"
    elif usl.dof > 0 and distinct >= len(FREE["usl"]):
        s = float(np.sqrt(usl.sse / usl.dof))
        se = s * np.sqrt(1.0 / counts[i] + 1.0 / counts[-1])
        bound, noise = float(stats.t.ppf(0.95, usl.dof) * se), "USL residual scatter"
    else:
        noise = f"no noise estimate: a drop of more than {DECLINE_RATIO:.0%} counts"
    if drop <= (DECLINE_RATIO * peak if bound is None else bound):
        return measured_max, None
    return measured_max, Decline(int(ns[i]), int(ns[-1]), drop, drop / peak, bound, noise)


def _weak(distinct: int, points: int) -> str | None:
    reasons = []
    if distinct < MIN_DISTINCT_N:
        reasons.append(
            f"only {distinct} distinct N (fewer than {MIN_DISTINCT_N}): sigma and kappa are "
            "poorly determined"
        )
    if distinct < len(FREE["usl"]):
        reasons.append(f"the USL's {len(FREE['usl'])} parameters need at least 3 distinct N")
    if points < len(FREE["usl"]) + 1:
        reasons.append(f"only {points} points for {len(FREE['usl'])} USL parameters")
    return "; ".join(reasons) or None


def predict(
    result: UslFit, ns: Sequence[float] | np.ndarray, model: str | None = None
) -> np.ndarray:
    """The fitted curve of the chosen model (or `model`) at each N in ns."""
    mf = result.models[model or result.model]
    return throughput(ns, **_kw(mf.params))


def band(
    result: UslFit,
    ns: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    model: str | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Confidence band of the fitted curve (not a prediction band for new trials).

    From the bootstrap draws when the fit was bootstrapped, else by the delta method on
    the covariance with a t quantile. None when the fit has no residual degrees of freedom.
    """
    mf = result.models[model or result.model]
    ns_arr = np.asarray(ns, dtype=float)
    tail = 100 * (1 - confidence) / 2
    if mf.draws is not None:
        curves = np.array([throughput(ns_arr, **_kw(_params(mf.name, d))) for d in mf.draws])
        lo, hi = np.percentile(curves, [tail, 100 - tail], axis=0)
        return lo, hi
    if mf.cov is None:
        return None
    g = _gradient(ns_arr, mf.params, mf.free)
    half = float(stats.t.ppf(0.5 + confidence / 2, mf.dof)) * np.sqrt(
        np.einsum("ij,jk,ik->i", g, mf.cov, g)
    )
    centre = throughput(ns_arr, **_kw(mf.params))
    return centre - half, centre + half


def karp_flatt(speedup: float, n: float) -> float | None:
    """Experimentally determined serial fraction e = (1/S - 1/N) / (1 - 1/N)."""
    if n <= 1 or speedup <= 0:
        return None
    return (1.0 / speedup - 1.0 / n) / (1.0 - 1.0 / n)
