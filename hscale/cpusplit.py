"""CPU_SPLIT: the replicas on CPUs of their own, everything else on the rest.

Why: on one host the load generator, nginx and the store run on the replicas' CPUs, and
what they use grows with N (Locust: 0.15 of a core at N = 1, 0.46 at N = 4 here). How
busy those CPUs are changes what a replica spends per request, in a direction that
differs from one machine to the next (docs/measurement.md), so the load generator bends
the curve. The default budget already sets aside RESERVED_CPUS for them (REPLICA_CPUS =
(host CPUs - 1) / largest N), so the replicas' CPUs can be theirs alone: the replicas,
the ballast and the speed probe go on the last ceil(largest N x REPLICA_CPUS) CPUs, and
the harness with everything it starts (Locust, nginx, the store) on the others.

On those CPUs the replicas and the ballast loops, each under a quota of 1/k of them, share
the CPUs by the scheduler's fair share, in slices of a few milliseconds: a replica then
rarely uses up its quota early in a CFS period, so it is not stalled for the rest of it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

EPS = 1e-9


@dataclass(frozen=True)
class Split:
    replicas: tuple[int, ...]
    others: tuple[int, ...]

    def as_dict(self) -> dict[str, list[int]]:
        return {"replicas": list(self.replicas), "others": list(self.others)}


def plan(available: Sequence[int], demand: float) -> tuple[Split | None, str]:
    """The split for replicas needing `demand` CPUs in all, or None and why not."""
    cpus = sorted(available)
    need = max(1, math.ceil(demand - EPS))
    if need >= len(cpus):
        return None, (
            f"the replicas' budgets need {demand:g} CPUs and this host has {len(cpus)}: "
            "no CPU would be left for the load generator, nginx and the store"
        )
    return Split(tuple(cpus[-need:]), tuple(cpus[:-need])), ""


def cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


def taskset(cpus: Sequence[int] | None, argv: list[str]) -> list[str]:
    """argv run on `cpus` only (children inherit it); unchanged for None."""
    return ["taskset", "-c", cpu_list(cpus), *argv] if cpus else argv


def pin_self(cpus: Sequence[int]) -> None:
    """Every thread of this process on `cpus`: what it starts from now on inherits them."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)


def rest_of(cpus: Sequence[int]) -> tuple[int, ...]:
    """This process's CPUs but `cpus`: where the harness put everything else."""
    return tuple(c for c in sorted(os.sched_getaffinity(0)) if c not in cpus)


def tree_cpus(procs: Sequence[psutil.Process]) -> str:
    """The CPUs any of these processes may run on, read back from the kernel."""
    cpus: set[int] = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # one that just ended
            cpus.update(proc.cpu_affinity())
    return cpu_list(sorted(cpus))


def available() -> tuple[int, ...]:
    return tuple(sorted(os.sched_getaffinity(0)))
