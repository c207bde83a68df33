"""Bootstrap confidence intervals and spread of per-trial throughputs.

The unit is one trial's mean throughput (per-second samples inside a trial are
autocorrelated), so samples here are small: 2 to ~10 values. BCa corrects the bias and
skew that small samples have; on data where BCa cannot be computed (its jackknife
degenerates) the percentile method is used instead. Resampling uses a fixed seed, so the
same trials always give the same interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

N_RESAMPLES = 9999
SEED = 0


def _bootstrap(
    samples: tuple[np.ndarray, ...], statistic: Callable[..., Any], confidence: float
) -> tuple[float, float] | None:
    """CI by BCa, else by percentile; None if neither gives finite bounds."""
    for method in ("BCa", "percentile"):
        # BCa warns (and returns NaN) when its acceleration estimate degenerates; treat
        # any warning as "this method failed" instead of letting it reach the caller.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = stats.bootstrap(
                samples,
                statistic,
                n_resamples=N_RESAMPLES,
                vectorized=True,
                paired=False,
                confidence_level=confidence,
                method=method,
                rng=np.random.default_rng(SEED),
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if not caught and np.isfinite(lo) and np.isfinite(hi):
            return lo, hi
    return None


def _array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=float)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Bootstrap CI of the mean; None with fewer than 2 values."""
    x = _array(values)
    if x.size < 2:
        return None
    if np.all(x == x[0]):  # nothing to resample: the interval is the value itself
        return float(x[0]), float(x[0])
    return _bootstrap((x,), lambda a, axis: np.mean(a, axis=axis), confidence)


def ratio_ci(
    num: Sequence[float], den: Sequence[float], confidence: float = 0.95
) -> tuple[float, float] | None:
    """Bootstrap CI of mean(num) / mean(den) for two independent samples.

    None when either sample has fewer than 2 values or den's mean is not positive.
    """
    a, b = _array(num), _array(den)
    if a.size < 2 or b.size < 2 or np.mean(b) <= 0:
        return None
    if np.all(a == a[0]) and np.all(b == b[0]):
        r = float(a[0] / b[0])
        return r, r

    def ratio(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):  # a resample of zeros: inf
            return np.mean(x, axis=axis) / np.mean(y, axis=axis)

    return _bootstrap((a, b), ratio, confidence)


def cv(values: Sequence[float]) -> float | None:
    """Coefficient of variation (sample std / mean); None with < 2 values or mean 0."""
    x = _array(values)
    if x.size < 2 or np.mean(x) == 0:
        return None
    return float(np.std(x, ddof=1) / np.mean(x))
