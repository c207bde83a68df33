"""A load generator that cannot keep up must make its point invalid, never a number.

Locust gets a 0.15-CPU quota (LOADGEN_CPUS) against one replica with a whole core: it
is then the bottleneck, by construction, on any host, and the trial must say so."""

from __future__ import annotations

import pytest
from hscale_testkit import Ports, clean_up_run, short_sweep

pytestmark = pytest.mark.e2e


def test_capped_load_generator_makes_the_point_invalid(tmp_path):
    args = ["--sweep", "1", "--replica-cpus", "1", "--users", "64", "--loadgen-cpus", "0.15"]
    done, run, summary = short_sweep(tmp_path, *args, *Ports(1).args())
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        (trial,) = summary["trials"]
        loadgen = trial["components"]["loadgen"]
        assert loadgen["budget_cpus"] == 0.15
        # the quota holds, and Locust used (nearly) all of it
        assert 0.12 <= loadgen["cpu_cores"] <= 0.15 * 1.15, loadgen
        assert not trial["valid"]
        assert any(n.startswith("load generator saturated") for n in trial["notes"]), trial
        (point,) = summary["points"]
        assert not point["valid"]
        assert point["bottleneck"]["component"] == "loadgen", point["bottleneck"]
        # the replica had room to spare: the number measured Locust, not the app
        assert trial["components"]["replica-1"]["util_of_budget"] < 0.8
        assert "load generator saturated" in done.stdout
    finally:
        clean_up_run(run.name)
