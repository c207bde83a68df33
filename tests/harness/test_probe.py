"""The host speed probe: a real process under its own quota, read at two instants."""

from __future__ import annotations

import secrets
import time

import psutil
import pytest

from hscale import cgroups
from hscale.cgroups import CpuGroup
from hscale.probe import PROBE_CPUS, Probe, speed

MODE, REASON = cgroups.detect()
pytestmark = pytest.mark.skipif(MODE == "none", reason=f"no cgroup CPU controller: {REASON}")


def test_probe_reports_work_per_cpu_ms_within_its_quota_and_leaves_nothing(tmp_path):
    probe = Probe(f"test-{secrets.token_hex(3)}", tmp_path)
    probe.start()
    try:
        # Python starts slowly under a 0.05-CPU quota: wait for its first count.
        deadline = time.monotonic() + 10
        while probe.reading()[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        first = probe.reading()
        time.sleep(2.0)
        last = probe.reading()
        pid = probe.proc.pid
    finally:
        probe.stop()
    assert first is not None and last is not None
    assert last[0] > first[0] > 0  # it keeps working
    used = last[1] - first[1]
    assert 0.3 * PROBE_CPUS * 2.0 < used < 1.5 * PROBE_CPUS * 2.0  # held to its quota
    assert speed(first, last) > 1  # work units per CPU-ms: ~20 us each
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert probe.reading() is None
    assert speed(None, last) is None and speed(last, last) is None


def test_a_group_takes_a_shorter_cfs_period_with_the_same_share(tmp_path):
    group = CpuGroup(MODE, f"hscale-test-{secrets.token_hex(4)}/short", 0.25, 10_000)
    try:
        d = group.dirs[0]
        if MODE == "v2":
            assert (d / "cpu.max").read_text().split() == ["2500", "10000"]
        else:
            assert (d / "cpu.cfs_period_us").read_text().strip() == "10000"
            assert (d / "cpu.cfs_quota_us").read_text().strip() == "2500"
    finally:
        group.remove()
