"""The baseline of speedup and efficiency, and what efficiency above 1 means."""

from __future__ import annotations

from collections.abc import Sequence

# Efficiency this far above 1 is more likely a measurement artefact than real superlinearity.
SUPERLINEAR = 1.05


def baseline_per_replica(points: Sequence[dict]) -> tuple[int, float] | None:
    """(n, X(n)/n) of the smallest N with a valid trial; the ideal line is N times this."""
    # A point with some valid trials (valid_trials) can be the baseline; its mean is then
    # of all its trials, as every point's is.
    usable = [
        p for p in points if p.get("valid_trials", p["valid"]) and p["throughput_rps"] > 0
    ] or [p for p in points if p["throughput_rps"] > 0]
    if not usable:
        return None
    first = min(usable, key=lambda p: p["replicas"])
    return first["replicas"], first["throughput_rps"] / first["replicas"]


def efficiency_notes(efficiency: float | None) -> list[str]:
    if efficiency is not None and efficiency > SUPERLINEAR:
        return [
            f"efficiency {efficiency:.3f} > 1: superlinear, suspicious (smaller N may be "
            "under-loaded or unevenly throttled); read the per-replica CPU before trusting it"
        ]
    return []
