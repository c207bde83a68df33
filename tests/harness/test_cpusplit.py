"""CPU_SPLIT: which CPUs the replicas get, and the knob's errors before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from analysis.validity import validity_notes
from hscale import cpusplit, settings
from hscale.analysis import precision
from hscale.errors import UsageError


@pytest.mark.parametrize(
    ("cpus", "demand", "replicas", "others"),
    [
        ((0, 1), 1.0, (1,), (0,)),  # the default budget on 2 CPUs: (2 - 1) / N each
        ((0, 1), 0.2, (1,), (0,)),  # a CPU is the least the replicas get
        ((0, 1, 2, 3), 3.0, (1, 2, 3), (0,)),
        ((0, 1, 2, 3), 2.01, (1, 2, 3), (0,)),  # a budget just over 2 CPUs needs 3
        ((3, 1, 2, 0), 1.5, (2, 3), (0, 1)),  # the last CPUs, whatever the order given
        ((0, 2, 5), 1.0, (5,), (0, 2)),  # a cpuset with gaps
    ],
)
def test_plan_gives_the_replicas_the_last_cpus_they_need(cpus, demand, replicas, others):
    split, why = cpusplit.plan(cpus, demand)
    assert split == cpusplit.Split(replicas, others) and why == ""


@pytest.mark.parametrize(("cpus", "demand"), [((0, 1), 1.5), ((0,), 0.25), ((0, 1), 2.0)])
def test_plan_refuses_when_no_cpu_is_left_for_the_rest(cpus, demand):
    split, why = cpusplit.plan(cpus, demand)
    assert split is None
    assert f"need {demand:g} CPUs" in why and f"has {len(cpus)}" in why


def test_taskset_runs_the_command_on_those_cpus_and_children_inherit_them():
    cpu = max(os.sched_getaffinity(0))
    code = "import os, subprocess, sys; print(sorted(os.sched_getaffinity(0)));" + (
        "print(subprocess.run([sys.executable, '-c', "
        "'import os; print(sorted(os.sched_getaffinity(0)))'], capture_output=True, "
        "text=True).stdout.strip())"
    )
    out = subprocess.run(
        cpusplit.taskset((cpu,), [sys.executable, "-c", code]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert out[:2] == [f"[{cpu}]", f"[{cpu}]"]
    assert cpusplit.taskset(None, ["x"]) == ["x"]


def test_pin_self_moves_every_thread_and_what_starts_later():
    before = cpusplit.available()
    seen: list[set[int]] = []
    started = threading.Event()
    go = threading.Event()

    def worker() -> None:
        started.set()
        go.wait()
        seen.append(os.sched_getaffinity(0))

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait()
    try:
        cpusplit.pin_self((before[0],))
        go.set()
        thread.join()
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert seen == [{before[0]}]  # a thread that already ran when it was called
        assert child.stdout.strip() == f"[{before[0]}]"
    finally:
        cpusplit.pin_self(before)
    assert cpusplit.available() == before


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_cpu_split_knob():
    assert settings.load({"SWEEP": "1 2", "CPU_SPLIT": "1"}).cpu_split == "1"
    default = next(k.default for k in settings.KNOBS if k.name == "CPU_SPLIT")
    assert settings.load({}).cpu_split == default
    cpus = len(os.sched_getaffinity(0))
    with pytest.raises(UsageError, match="^CPU_SPLIT=1: the replicas' budgets need"):
        settings.load({"SWEEP": "1 2", "REPLICA_CPUS": str(cpus / 2), "CPU_SPLIT": "1"})
    with pytest.raises(UsageError, match="applies to one host"):
        settings.load({"CPU_SPLIT": "1", "RUNTIME": "swarm"})
    with pytest.raises(UsageError, match="CPU_SPLIT"):
        settings.load({"CPU_SPLIT": "2"})


def test_a_split_host_is_judged_on_the_cpus_beside_the_replicas():
    common = dict(
        requests=1000,
        failures=0,
        per_replica_requests={"r1": 1000},
        expected_replicas=["r1"],
        cpu_warnings=[],
        loadgen_cpu=0.3,
        oversubscribed=None,
    )
    part = "the CPUs beside the replicas"
    notes = validity_notes(**common, host_busy_cores=0.95, host_cpus=1, host_part=part)
    assert notes == [
        f"{part} saturated: 0.95 of 1 cores busy, so components could not all get their CPU "
        "(is something else running?)"
    ]
    assert validity_notes(**common, host_busy_cores=0.85, host_cpus=1, host_part=part) == []


@pytest.mark.parametrize(
    ("split", "says"),
    [
        (None, "within 2.5% with CPU_SPLIT=1, which packs the replicas on one CPU"),
        ({"replicas": [1], "others": [0]}, "packed on one CPU they read E(4) 0.81 and 0.84"),
    ],
)
def test_the_run_states_the_load_generators_bias_measured_for_its_placement(split, says):
    loadgen = {"kind": "loadgen", "cpu_cores": 0.2, "demand_ms": 0.3}
    points = [{"replicas": n, "components": {"loadgen": loadgen}} for n in (1, 4)]
    line = next(x for x in precision.describe({"points": points, "cpu_split": split})
                if x.startswith("load generator:"))  # fmt: skip
    assert says in line and "docs/measurement.md" in line
