"""`hscale loadgen-check`'s arithmetic, where a sweep finds the latest check, and its
usage errors. The measurement itself runs in tests/e2e/test_loadgen_check.py."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
from hscale_testkit import run_hscale

from hscale import sysinfo
from hscale.analysis import loadgen_check, precision
from hscale.analysis.loadgen_check import Window
from hscale.loadgen_check import FILE, latest_for


def pairs(ratio: float, rounds: int, beta: float, seed: int) -> list:
    """(wrk, locust) rounds whose true ratio is `ratio`, and whose Locust window saw the
    host's speed differ from wrk's, moving its throughput by speed**beta."""
    rng = random.Random(seed)
    out = []
    for _ in range(rounds):
        wrk_speed, lc_speed = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)
        wrk = Window(1000 * wrk_speed**beta, 0.02, 0.4, wrk_speed)
        noise = math.exp(rng.gauss(0, 0.005))
        lc = Window(1000 * ratio * lc_speed**beta * noise, 0.3, 0.42, lc_speed)
        out.append((wrk, lc))
    return out


def test_the_ratios_and_the_bias_in_e_with_the_probe_taken_out() -> None:
    found = {1: pairs(1.05, 6, 0.8, 1), 4: pairs(0.90, 6, 0.8, 2)}
    got = loadgen_check.summarize(found)
    assert got["probe_slope"] == pytest.approx(0.8, abs=0.05)
    one, four = got["points"]
    assert one["ratio_adjusted"]["ratio"] == pytest.approx(1.05, rel=0.01)
    assert four["ratio_adjusted"]["ratio"] == pytest.approx(0.90, rel=0.01)
    # The speed moved the raw ratios by up to 15%: their intervals are wider.
    raw_width = math.log(four["ratio"]["high"] / four["ratio"]["low"])
    assert raw_width > 3 * math.log(four["ratio_adjusted"]["high"] / four["ratio_adjusted"]["low"])
    e = got["e_bias_adjusted"]
    assert e["ratio"] == pytest.approx(0.90 / 1.05, rel=0.01) and e["low"] < e["ratio"] < e["high"]
    assert e["high"] < 1  # a bias of 14% is found, not hidden by the noise
    assert four["wrk"]["loadgen_cores"] == pytest.approx(0.02)
    assert four["locust"]["replica_ms"] == pytest.approx(0.42)


def test_without_probe_readings_only_the_raw_ratios() -> None:
    bare = {1: [(replace(w, probe_speed=None), c) for w, c in pairs(1.0, 3, 0.0, 3)]}
    got = loadgen_check.summarize(bare)
    assert got["probe_slope"] is None and got["points"][0]["ratio_adjusted"] is None
    assert got["e_bias"] is None  # one N: no E
    assert got["points"][0]["ratio"]["ratio"] == pytest.approx(1.0, abs=0.01)


def _check(tmp: Path, run_id: str, *, runtime="docker", split="0", status="complete", host=None):
    doc = {
        "schema_version": 1,
        "run_id": run_id,
        "status": status,
        "ended_at": "2026-12-01T06:00:00+0000",
        "host": host or sysinfo.host(),
        "runtime": runtime,
        "replicas": 4,
        "cpu_split": split,
        "result": loadgen_check.summarize({1: pairs(1.0, 3, 0.5, 4), 4: pairs(0.9, 3, 0.5, 5)}),
    }
    (tmp / run_id).mkdir()
    (tmp / run_id / FILE).write_text(json.dumps(doc))


def test_a_sweep_finds_the_newest_complete_check_of_its_host_runtime_and_split(tmp_path) -> None:
    assert latest_for(tmp_path, "docker", "0") is None
    _check(tmp_path, "20261201-050000-loadgen-check-json-aaaaaa")
    _check(tmp_path, "20261201-060000-loadgen-check-json-bbbbbb", status="interrupted")
    _check(tmp_path, "20261201-070000-loadgen-check-json-cccccc", runtime="local")
    _check(tmp_path, "20261201-080000-loadgen-check-json-dddddd", split="1")
    other = {**sysinfo.host(), "hostname": "elsewhere"}
    _check(tmp_path, "20261201-090000-loadgen-check-json-eeeeee", host=other)
    found = latest_for(tmp_path, "docker", "0")
    assert found is not None and found["run_id"].endswith("aaaaaa")
    assert latest_for(tmp_path, "local", "0")["run_id"].endswith("cccccc")  # type: ignore[index]
    assert latest_for(tmp_path, "docker", "1")["run_id"].endswith("dddddd")  # type: ignore[index]


def test_the_sweep_states_the_check_of_its_host(tmp_path) -> None:
    _check(tmp_path, "20261201-050000-loadgen-check-json-aaaaaa")
    points = [
        {"replicas": n, "components": {"loadgen": {"cpu_cores": c, "demand_ms": 0.5}}}
        for n, c in ((1, 0.2), (4, 0.5))
    ]
    summary = {"points": points, "loadgen_check": latest_for(tmp_path, "docker", "0")}
    (line,) = [x for x in precision.describe(summary) if x.startswith("load generator")]
    assert "20261201-050000-loadgen-check-json-aaaaaa" in line and "E(4) reads 0.89" in line
    assert "VMs hscale is developed on" not in line
    (line,) = [x for x in precision.describe({"points": points}) if x.startswith("load generator")]
    assert "make loadgen-check" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "mixed"], "SCENARIO=json, not mixed"),
        (["--loadgen-workers", "2"], "one Locust process"),
        (["--load", "rate", "--rate", "100"], "closed loop"),
    ],
)
def test_usage_errors_before_anything_starts(tmp_path, args, message) -> None:
    done = run_hscale(["loadgen-check", "--results", str(tmp_path / "r"), *args], tmpdir=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not list((tmp_path / "r").glob("*/*"))  # no run directory made
