"""Host speed probe: a fixed Python workload under its own small CPU quota, run beside
every trial, whose work per CPU-second is an index of how fast this host runs Python now.

Why: on a shared virtual machine the same replica under the same quota does more or less
work per CPU-second from one 20-second window to the next (measured here: its CPU per
request moved from 0.64 to 0.79 ms between trials of one N, with no steal time shown).
That common-mode change is noise for the scaling question. The probe sees it too (the
same CPUs, caches and hypervisor), so its speed during a trial is a control variate:
analysis/precision.py uses it to take that noise out of the throughputs, raw figures kept
beside the adjusted ones (a duet benchmark in the sense of Bulej et al., ICPE 2020: a
fixed reference workload beside the measured one, under a quota of its own).

The probe publishes its count of work units in an 8-byte file it maps into memory; the
harness reads the count and the probe's cgroup CPU counter at the trial's boundaries.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from hscale import cgroups, cpusplit
from hscale.cgroups import CpuGroup
from hscale.procs import ManagedProcess, child_env

# Small enough to leave the budgets alone (it is counted out of the host's busy CPU, as
# the ballast is), large enough for ~1 CPU-second of work in a 20 s window.
PROBE_CPUS = 0.05

# One unit: the kind of work a Flask request does in Python (dicts, strings, JSON),
# ~20 us; the count is published every 64 units.
WORKLOAD = """
import json, mmap, struct, sys
with open(sys.argv[1], "r+b") as fh:
    mm = mmap.mmap(fh.fileno(), 8)
doc = {"id": 0, "name": "probe", "tags": ["a", "b", "c"], "score": 0.5}
count = 0
while True:
    for i in range(64):
        doc["id"] = i
        text = json.dumps(doc)
        parsed = json.loads(text)
        total = sum(len(k) + len(str(v)) for k, v in parsed.items())
        words = " ".join(sorted(str(total + j) for j in range(8)))
    count += 64
    struct.pack_into("<Q", mm, 0, count)
"""


class Probe:
    def __init__(self, run_id: str, logdir: Path) -> None:
        self.mode, self.reason = cgroups.detect()
        self.run_id, self.logdir = run_id, logdir
        self.count_file = logdir / "probe.count"
        self.proc: ManagedProcess | None = None
        self.cpuset: tuple[int, ...] | None = None  # CPU_SPLIT: beside the replicas
        self.group: CpuGroup | None = None

    @property
    def usable(self) -> bool:
        """Without a quota the probe would take a whole core from the stack."""
        return self.mode != "none"

    def start(self) -> None:
        if not self.usable or self.proc is not None:
            return
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.count_file.write_bytes(bytes(8))
        self.group = CpuGroup(self.mode, f"hscale-{self.run_id}/probe", PROBE_CPUS)
        workload = [sys.executable, "-c", WORKLOAD, str(self.count_file)]
        argv = self.group.wrap(cpusplit.taskset(self.cpuset, workload))
        self.proc = ManagedProcess("probe", argv, self.logdir / "probe.log", child_env(self.run_id))

    def reading(self) -> tuple[int, float] | None:
        """(work units done, CPU-seconds used) so far; None when not running."""
        if self.group is None:
            return None
        units = struct.unpack("<Q", self.count_file.read_bytes()[:8])[0]
        return units, self.group.counters().cpu_s

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=2)
            self.proc = None
        if self.group is not None:
            self.group.remove()
            self.group = None


def speed(start: tuple[int, float] | None, end: tuple[int, float] | None) -> float | None:
    """Work units per CPU-millisecond between two readings; None without both or work."""
    if start is None or end is None:
        return None
    units, cpu_s = end[0] - start[0], end[1] - start[1]
    return round(units / (cpu_s * 1000), 4) if cpu_s > 0 and units > 0 else None
