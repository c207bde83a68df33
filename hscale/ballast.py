"""Ballast: busy loops that keep the host equally loaded at every N.

Why: replicas share one host, and a replica's CPU cost per request depends on how busy
the host is (idle virtual CPUs halt and wake, caches go cold). Measured on the 2-core VM
this was written on, /json cost 0.46 ms of replica CPU per request at N = 1 and 0.36 ms
at N = 4, an efficiency E(4) = 1.30 that was artefact, not app (see README.md). Real replicas run on
machines of their own, whose load does not depend on N. So at each point, (largest N - N)
busy loops run beside the stack, each under the same CPU quota as a replica: the replicas'
share of the host is then the same at every N. Their CPU is measured and excluded from
the host's busy figure. BALLAST=0 turns this off.

The rest of the host's load grows with N too: the load generator, nginx and the store
serve N times the requests. One more loop, the top-up, makes up the difference between
what they use at this N and at the largest (hscale/balance.py sizes it; BALANCE_HOST=1
turns it on), so the host is as busy at every N whichever load generator drives it. It
is off by default: it did not remove the load generator's bias (docs/measurement.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from hscale import cgroups, cpusplit
from hscale.cgroups import CpuGroup
from hscale.procs import ManagedProcess, child_env

SPIN = "while True:\n    pass\n"
MIN_TOPUP = 0.02  # cores: below this the top-up is not worth a process


class Ballast:
    def __init__(
        self, run_id: str, cpus: float, logdir: Path, period_us: int = cgroups.PERIOD_US
    ) -> None:
        self.run_id, self.cpus, self.logdir, self.period_us = run_id, cpus, logdir, period_us
        self.cpuset: tuple[int, ...] | None = None  # CPU_SPLIT: the replicas' CPUs
        self.mode, self.reason = cgroups.detect()
        self.loops: list[tuple[ManagedProcess, CpuGroup]] = []
        self.topup: tuple[ManagedProcess, CpuGroup] | None = None
        self.topup_cores = 0.0
        self.retired_s = 0.0  # CPU of loops already stopped (cpu_seconds only grows)

    @property
    def usable(self) -> bool:
        """Without a quota a busy loop would take a whole core: worse than no ballast."""
        return self.mode != "none"

    def resize(self, count: int) -> None:
        while len(self.loops) > count:
            proc, group = self.loops.pop()
            proc.stop(timeout=2)
            group.remove()
        while self.usable and len(self.loops) < count:
            name = f"ballast-{len(self.loops) + 1}"
            group = CpuGroup(self.mode, f"hscale-{self.run_id}/{name}", self.cpus, self.period_us)
            argv = group.wrap(cpusplit.taskset(self.cpuset, [sys.executable, "-c", SPIN]))
            proc = ManagedProcess(name, argv, self.logdir / f"{name}.log", child_env(self.run_id))
            self.loops.append((proc, group))

    def top_up(self, cores: float) -> None:
        """One loop under a quota of `cores` (none below MIN_TOPUP): its quota is rewritten
        in place when it already runs, so its CPU counter keeps counting."""
        cores = cores if cores >= MIN_TOPUP and self.usable else 0.0
        if self.topup and not cores:
            proc, group = self.topup
            self.retired_s += group.counters().cpu_s  # counters only grow within a run
            proc.stop(timeout=2)
            group.remove()
            self.topup = None
        elif self.topup:
            cgroups.set_quota(self.topup[1].dirs[0], self.mode, cores, self.period_us)
        elif cores:
            name = "ballast-topup"
            group = CpuGroup(self.mode, f"hscale-{self.run_id}/{name}", cores, self.period_us)
            argv = group.wrap(cpusplit.taskset(self.cpuset, [sys.executable, "-c", SPIN]))
            proc = ManagedProcess(name, argv, self.logdir / f"{name}.log", child_env(self.run_id))
            self.topup = (proc, group)
        self.topup_cores = round(cores, 3)

    def cpu_seconds(self) -> float:
        loops = [*self.loops, *([self.topup] if self.topup else [])]
        return self.retired_s + sum(group.counters().cpu_s for _, group in loops)

    def stop(self) -> None:
        self.top_up(0)
        self.resize(0)
