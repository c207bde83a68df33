"""Exact latency percentiles from the HdrHistogram the load generator recorded."""

from __future__ import annotations

import base64

from hdrh.histogram import HdrHistogram

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99_9": 99.9}


def decode(encoded: str) -> HdrHistogram:
    return HdrHistogram.decode(base64.b64decode(encoded))


def encode(hist: HdrHistogram) -> str:
    return base64.b64encode(hist.encode()).decode()


def percentiles_ms(encoded: str | None) -> dict[str, float | None]:
    """p50..p99.9, max and mean in milliseconds (histogram values are microseconds)."""
    keys = [*PERCENTILES, "max", "mean"]
    if not encoded:
        return dict.fromkeys(keys)
    hist = decode(encoded)
    out = {k: hist.get_value_at_percentile(p) / 1000 for k, p in PERCENTILES.items()}
    out["max"] = hist.get_max_value() / 1000
    out["mean"] = round(hist.get_mean_value() / 1000, 3)
    return out
