"""CPU per component over the measurement window, from cumulative counters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class CpuCounters(Protocol):
    """Cumulative CPU counters of one component (hscale.cgroups.CpuCounters has these)."""

    @property
    def cpu_s(self) -> float: ...
    @property
    def nr_periods(self) -> int: ...
    @property
    def nr_throttled(self) -> int: ...
    @property
    def throttled_s(self) -> float: ...


def cpu_usage(
    start: Mapping[str, CpuCounters],
    end: Mapping[str, CpuCounters],
    seconds: float,
    budgets: Mapping[str, float | None],
    kinds: Mapping[str, str],
) -> dict[str, dict]:
    """Per component: CPU cores used on average, share of its budget, CFS throttling."""
    out = {}
    for name in sorted(set(start) & set(end)):
        a, b = start[name], end[name]
        # A counter that went backwards: its process ended in the window (the trial is
        # marked not valid for that); 0, never a negative CPU.
        cores = max(0.0, b.cpu_s - a.cpu_s) / seconds if seconds > 0 else 0.0
        budget = budgets.get(name)
        periods = b.nr_periods - a.nr_periods
        out[name] = {
            "kind": kinds.get(name, "other"),
            "cpu_cores": round(cores, 4),
            "budget_cpus": budget,
            "util_of_budget": round(cores / budget, 4) if budget else None,
            "throttled_periods": round((b.nr_throttled - a.nr_throttled) / periods, 4)
            if periods
            else None,
            "throttled_s": round(b.throttled_s - a.throttled_s, 4),
        }
    return out
