"""Idle-CPU spinners: one busy loop per host CPU at SCHED_IDLE priority.

Why: an idle core drops into power-saving states (and a virtual CPU is descheduled), and
waking it costs time. With few replicas the host is mostly idle, so each request costs
more CPU than with many replicas; measured here, /json took 0.48 ms of replica CPU per
request at N = 1 and 0.35 ms at N = 4, an efficiency of 1.36 that was pure artefact.
SCHED_IDLE tasks run only when nothing else wants the CPU, so the spinners keep every core
equally awake at every N without taking CPU from the stack. SPIN_IDLE=0 turns them off.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hscale.procs import ManagedProcess, child_env

SPIN = (
    "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True:\n    pass\n"
)


def start(count: int, run_id: str, logdir: Path) -> list[ManagedProcess]:
    return [
        ManagedProcess(
            f"spinner-{i}",
            [sys.executable, "-c", SPIN],
            logdir / f"spinner-{i}.log",
            child_env(run_id),
        )
        for i in range(count)
    ]


def available() -> bool:
    return hasattr(os, "SCHED_IDLE")
