"""Exact latency percentiles from the HdrHistogram the load generator recorded."""

from __future__ import annotations

import base64
import functools

from hdrh.histogram import HdrHistogram

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99_9": 99.9}


def decode(encoded: str) -> HdrHistogram:
    return HdrHistogram.decode(base64.b64decode(encoded))


def encode(hist: HdrHistogram) -> str:
    return base64.b64encode(hist.encode()).decode()


def percentiles_ms(encoded: str | None) -> dict[str, float | None]:
    """p50..p99.9, max and mean in milliseconds (histogram values are microseconds)."""
    if not encoded:
        return dict.fromkeys([*PERCENTILES, "max", "mean"])
    return dict(_percentiles_ms(encoded))


@functools.lru_cache(maxsize=256)
def _percentiles_ms(encoded: str) -> dict[str, float | None]:
    # Cached: a sweep re-derives every point after each trial, and the mean walks every
    # value in pure Python (0.1 s a point); a point whose trials did not change hits.
    hist = decode(encoded)
    out = {k: hist.get_value_at_percentile(p) / 1000 for k, p in PERCENTILES.items()}
    out["max"] = hist.get_max_value() / 1000
    out["mean"] = round(hist.get_mean_value() / 1000, 3)
    return out


def throttle_stall_ms(cpus: float, period_us: int) -> float:
    """How long a replica that spent its CFS quota waits for the next period: a request
    it holds then waits this long on top of its own time."""
    return max(0.0, period_us * (1 - min(cpus, 1.0)) / 1000)


def throttle_dominated(
    percentiles: dict[str, float | None], stall_ms: float, throttled_share: float | None
) -> list[str]:
    """The percentiles that mostly measure the quota, not the app: enough periods end
    throttled to reach that percentile (share >= 1 - q) and the value is at least half a
    stall (the mean wait of a request that meets one; a
    request queued behind a burst can meet several). E.g. 0.25 CPU over 100 ms stalls
    75 ms: a p99 of 170 ms is marked, a p50 of 20 ms (no stall in it) is not."""
    if not throttled_share or stall_ms <= 0:
        return []
    marked = []
    for key, q in PERCENTILES.items():
        value = percentiles.get(key)
        if value and throttled_share >= 1 - q / 100 and value >= stall_ms / 2:
            marked.append(key)
    return marked
