"""How big the ballast's top-up loop is at each N (pure).

The replicas' share of the host is equal at every N by the ballast's loops; what else
the host runs (the load generator, nginx, the store, the kernel's share) grows with the
requests served, and a replica's CPU cost per request depends on how busy the host is.
hscale's Locust uses 0.15 cores at N = 1 and 0.5 at N = 4, and against wrk its E(4)
read 10% high on one machine and 12% low on another (docs/measurement.md). The top-up
makes up the difference: at N it burns what the rest of the host used at the largest N
minus what it uses at N, both read from the trials measured so far. Measured, it did not
remove that bias, so BALANCE_HOST is off by default; it stays to be tried elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from statistics import mean


def others_cores(record: Mapping) -> float | None:
    """Host CPU a trial used beside the replicas, the ballast and the speed probe."""
    busy = (record.get("host") or {}).get("busy_cores")
    comps = record.get("components") or {}
    if busy is None or not comps:
        return None
    replicas = sum(c.get("cpu_cores") or 0.0 for c in comps.values() if c.get("kind") == "replica")
    return max(0.0, busy - replicas)


def top_up_cores(measured: Iterable[tuple[int, float]], n: int, largest: int) -> float:
    """Cores for the top-up at N, from (N, others_cores) of the trials so far: the rest of
    the host's use at the largest N minus at N. Where an N is not measured yet, the rest
    is taken as growing in proportion to N (it serves that many more requests); nothing
    measured yet, no top-up."""
    by_n: dict[int, list[float]] = {}
    for m, cores in measured:
        by_n.setdefault(m, []).append(cores)
    if not by_n or n >= largest:
        return 0.0
    per_replica = mean(mean(v) / m for m, v in by_n.items())
    target = mean(by_n[largest]) if largest in by_n else per_replica * largest
    here = mean(by_n[n]) if n in by_n else per_replica * n
    return round(max(0.0, target - here), 3)
