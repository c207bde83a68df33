"""Whether a measured point can be trusted, and why not."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MAX_FAILURE_RATE = 0.01
# One Locust process uses at most one core; near its budget (a core per process that
# generates load), the generator limits throughput. Compared with util_of_budget.
LOADGEN_SATURATED_CPU = 0.9
# Beyond this share of the host's CPUs busy, components wait for a core: budgets are not met.
HOST_SATURATED = 0.9


def validity_notes(
    *,
    requests: int,
    failures: int,
    per_replica_requests: Mapping[str, int],
    expected_replicas: Sequence[str],
    cpu_warnings: Sequence[float],
    loadgen_cpu: float | None,
    oversubscribed: str | None,
    host_busy_cores: float | None = None,
    host_cpus: int | None = None,
) -> list[str]:
    """Reasons the point is not valid; an empty list means valid."""
    notes = []
    if requests == 0:
        return ["no requests completed in the measurement window"]
    if cpu_warnings:
        notes.append(
            f"load generator saturated: Locust cpu_warning {len(cpu_warnings)}x "
            f"(max {max(cpu_warnings):.0f}% CPU)"
        )
    elif loadgen_cpu is not None and loadgen_cpu >= LOADGEN_SATURATED_CPU:
        notes.append(f"load generator saturated: {loadgen_cpu:.0%} of its CPU budget")
    rate = failures / requests
    if rate > MAX_FAILURE_RATE:
        notes.append(f"failures {rate:.1%} > {MAX_FAILURE_RATE:.0%} ({failures} of {requests})")
    idle = [r for r in expected_replicas if per_replica_requests.get(r, 0) == 0]
    if idle:
        notes.append(f"replica(s) received no traffic: {', '.join(idle)}")
    stray = sorted(set(per_replica_requests) - set(expected_replicas))
    if stray:
        notes.append(f"traffic from unexpected replica(s): {', '.join(stray)}")
    if oversubscribed:
        notes.append(f"oversubscribed: {oversubscribed}")
    elif (
        host_busy_cores is not None and host_cpus and host_busy_cores >= HOST_SATURATED * host_cpus
    ):
        notes.append(
            f"host CPU saturated: {host_busy_cores:.2f} of {host_cpus} cores busy, so components "
            "could not all get their CPU (is something else running?)"
        )
    return notes
