"""CPU budgets for local processes through cgroups (v1 or v2), and their CPU counters.

A replica's budget is a CFS quota: `quota/period` CPUs. Processes join their group
through a `sh` wrapper that writes its own pid into the group and then execs the real
command, so every process the command forks stays inside the budget from the start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000  # the kernel's and Docker's default CFS period


@dataclass(frozen=True)
class CpuCounters:
    """Cumulative counters; differences over a window give usage and throttling."""

    cpu_s: float
    nr_periods: int = 0
    nr_throttled: int = 0
    throttled_s: float = 0.0


def detect() -> tuple[str, str]:
    """Return (mode, reason): mode is "v2", "v1" or "none"; reason explains "none"."""
    if os.geteuid() != 0:
        return "none", "not root: cannot create cgroups for per-replica CPU budgets"
    if (ROOT / "cgroup.controllers").exists():
        if "cpu" not in (ROOT / "cgroup.controllers").read_text().split():
            return "none", "cgroup v2 without the cpu controller"
        return "v2", ""
    if (ROOT / "cpu" / "cpu.cfs_quota_us").exists() and (ROOT / "cpuacct").exists():
        return "v1", ""
    if (ROOT / "cpu,cpuacct" / "cpu.cfs_quota_us").exists():
        return "v1", ""
    return "none", "no writable cgroup cpu controller found under /sys/fs/cgroup"


def _read_kv(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


class CpuGroup:
    """One cgroup with a CPU quota (or none, cpus=None: accounting only)."""

    def __init__(
        self, mode: str, name: str, cpus: float | None, period_us: int = PERIOD_US
    ) -> None:
        self.mode, self.name, self.cpus, self.period_us = mode, name, cpus, period_us
        if mode == "v2":
            self.dirs = [ROOT / name]
        else:
            cpu = ROOT / "cpu" if (ROOT / "cpu").is_dir() else ROOT / "cpu,cpuacct"
            acct = ROOT / "cpuacct" if (ROOT / "cpuacct").is_dir() else cpu
            self.dirs = list(dict.fromkeys([cpu / name, acct / name]))
        if mode == "v2":
            _enable_v2_cpu(ROOT / name)
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        set_quota(self.dirs[0], mode, cpus, period_us)

    def wrap(self, argv: list[str]) -> list[str]:
        """argv run inside this group: the wrapper joins it, then execs argv."""
        joins = " && ".join(f"echo $$ > {d / 'cgroup.procs'}" for d in self.dirs)
        return ["sh", "-c", f'{joins} && exec "$@"', "sh", *argv]

    def counters(self) -> CpuCounters:
        if self.mode == "v2":
            st = _read_kv(self.dirs[0] / "cpu.stat")
            return CpuCounters(
                cpu_s=st.get("usage_usec", 0) / 1e6,
                nr_periods=st.get("nr_periods", 0),
                nr_throttled=st.get("nr_throttled", 0),
                throttled_s=st.get("throttled_usec", 0) / 1e6,
            )
        st = _read_kv(self.dirs[0] / "cpu.stat")
        usage_ns = int((self.dirs[-1] / "cpuacct.usage").read_text())
        return CpuCounters(
            cpu_s=usage_ns / 1e9,
            nr_periods=st.get("nr_periods", 0),
            nr_throttled=st.get("nr_throttled", 0),
            throttled_s=st.get("throttled_time", 0) / 1e9,
        )

    def pids(self) -> list[int]:
        procs = self.dirs[0] / "cgroup.procs"
        return [int(p) for p in procs.read_text().split()] if procs.exists() else []

    def remove(self) -> None:
        """Kill whatever is still inside, then remove the group (and empty parents)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # processes still exiting
                    time.sleep(0.05)
            parent = d.parent
            try:  # the run's parent group, once its last replica is gone
                if parent.name.startswith("hscale-"):
                    parent.rmdir()
            except OSError:
                pass


def set_quota(group: Path, mode: str, cpus: float | None, period_us: int = PERIOD_US) -> None:
    """A CFS quota of `cpus` per period_us (None: no limit) on one cgroup directory.

    The quota is cleared first, so that a shorter period never meets an old quota the
    kernel would find inconsistent (v1 checks quota against period on every write)."""
    quota = -1 if cpus is None else round(cpus * period_us)
    if mode == "v2":
        (group / "cpu.max").write_text(f"{'max' if quota < 0 else quota} {period_us}")
        return
    (group / "cpu.cfs_quota_us").write_text("-1")
    (group / "cpu.cfs_period_us").write_text(str(period_us))
    (group / "cpu.cfs_quota_us").write_text(str(quota))


def _enable_v2_cpu(group: Path) -> None:
    """Turn the cpu controller on in each ancestor, as v2 requires for a quota below it."""
    for parent in reversed(group.relative_to(ROOT).parents):
        (ROOT / parent).mkdir(exist_ok=True)
        control = ROOT / parent / "cgroup.subtree_control"
        if "cpu" not in control.read_text().split():
            control.write_text("+cpu")


def _container_cpu_dir(container_id: str) -> tuple[str, Path] | None:
    """(mode, the cgroup directory holding a container's CPU quota) on this host."""
    for mode, d in (
        ("v1", ROOT / "cpu" / "docker" / container_id),
        ("v1", ROOT / "cpu,cpuacct" / "docker" / container_id),
        ("v1", ROOT / "cpu" / "system.slice" / f"docker-{container_id}.scope"),
        ("v2", ROOT / "system.slice" / f"docker-{container_id}.scope"),
        ("v2", ROOT / "docker" / container_id),
    ):
        if (d / ("cpu.max" if mode == "v2" else "cpu.cfs_quota_us")).exists():
            return mode, d
    return None


def container_pids(container_id: str) -> list[int] | None:
    """The processes of a Docker container on this host, as this host numbers them; None
    when its cgroup is not here (another node, or a harness in a container of its own)."""
    found = _container_cpu_dir(container_id)
    if found is None:
        return None
    try:
        return [int(pid) for pid in (found[1] / "cgroup.procs").read_text().split()]
    except OSError:
        return None


def listening(pid: int, port: int) -> bool | None:
    """Whether a socket in `pid`'s network namespace listens on TCP `port`; None when its
    /proc entry cannot be read."""
    want = f":{port:04X}"
    try:
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[1].endswith(want):  # 0A: TCP_LISTEN
                    return True
    except OSError:
        return None
    return False


def set_container_period(container_id: str, cpus: float, period_us: int) -> bool:
    """Give a running container the same CPU share over another CFS period. Docker's
    `cpus` always uses 100 ms, and compose cannot set a period beside it, so the quota
    is rewritten in place; False when the container's cgroup is not on this host."""
    found = _container_cpu_dir(container_id)
    if found is None:
        return False
    set_quota(found[1], found[0], cpus, period_us)
    return True


def container_counters(container_id: str) -> CpuCounters | None:
    """A Docker container's counters from its cgroup on this host (cgroupfs or systemd
    driver, v1 or v2), or None when it is not found here."""
    v1 = [
        (ROOT / "cpu" / "docker" / container_id, ROOT / "cpuacct" / "docker" / container_id),
        (ROOT / "cpu,cpuacct" / "docker" / container_id,) * 2,
        (
            ROOT / "cpu" / "system.slice" / f"docker-{container_id}.scope",
            ROOT / "cpuacct" / "system.slice" / f"docker-{container_id}.scope",
        ),
    ]
    for cpu, acct in v1:
        if (acct / "cpuacct.usage").exists() and (cpu / "cpu.stat").exists():
            st = _read_kv(cpu / "cpu.stat")
            return CpuCounters(
                cpu_s=int((acct / "cpuacct.usage").read_text()) / 1e9,
                nr_periods=st.get("nr_periods", 0),
                nr_throttled=st.get("nr_throttled", 0),
                throttled_s=st.get("throttled_time", 0) / 1e9,
            )
    for d in (
        ROOT / "system.slice" / f"docker-{container_id}.scope",
        ROOT / "docker" / container_id,
    ):
        if (d / "cpu.stat").exists():
            st = _read_kv(d / "cpu.stat")
            return CpuCounters(
                cpu_s=st.get("usage_usec", 0) / 1e6,
                nr_periods=st.get("nr_periods", 0),
                nr_throttled=st.get("nr_throttled", 0),
                throttled_s=st.get("throttled_usec", 0) / 1e6,
            )
    return None
