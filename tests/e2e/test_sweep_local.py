"""A real sweep, N = 1 and 2 with two trials each, through the installed `hscale`
console script: real nginx, gunicorn replicas under cgroup quotas, redis-server and
Locust, into a private results dir on ports of its own. Then what it wrote, and what it
left behind (nothing)."""

from __future__ import annotations

import csv
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hscale_testkit import (
    Ports,
    cgroup_dirs,
    clean_up_run,
    run_dirs,
    run_hscale,
    wait_no_marked_processes,
)

from hscale import cgroups
from hscale.analysis import precision

pytestmark = pytest.mark.e2e

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
POINT_KEYS = {
    "replicas",
    "throughput_rps",
    "requests",
    "failures",
    "latency_ms",
    "per_replica_requests",
    "valid",
    "notes",
    "components",
}


@dataclass
class Run:
    results: Path
    tmpdir: Path
    path: Path
    returncode: int
    stdout: str
    stderr: str
    summary_bytes: bytes  # summary.json as the run left it

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def summary(self) -> dict:
        return json.loads((self.path / "summary.json").read_text())

    @property
    def manifest(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text())

    def why(self) -> str:
        out, err = self.stdout[-3000:], self.stderr[-3000:]
        return f"exit {self.returncode}\nstdout:\n{out}\nstderr:\n{err}"


def bench(results: Path, tmpdir: Path, *args: str, replicas: int) -> Run:
    before = set(run_dirs(results))
    done = run_hscale(
        ["bench", "--scenario", "json", "--results", str(results), *Ports(replicas).args(), *args],
        tmpdir=tmpdir,
        timeout=150,
    )
    new = sorted(set(run_dirs(results)) - before)
    assert len(new) == 1, f"expected one new run dir, got {new}\n{done.stderr[-3000:]}"
    written = new[0] / "summary.json"
    summary = written.read_bytes() if written.exists() else b""
    return Run(results, tmpdir, new[0], done.returncode, done.stdout, done.stderr, summary)


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Iterator[dict[str, Path]]:
    base = tmp_path_factory.mktemp("sweep")
    yield {"results": base / "results", "tmpdir": base / "tmp"}
    for run in run_dirs(base / "results"):  # whatever the tests asserted, leave nothing
        clean_up_run(run.name)


@pytest.fixture(scope="module")
def run(space) -> Run:
    args = ["--sweep", "1 2", "--trials", "2", "--duration", "4", "--warmup", "2"]
    return bench(space["results"], space["tmpdir"], *args, replicas=2)


def test_exit_code_and_table(run):
    assert run.returncode == 0, run.why()
    assert run.run_id in run.stdout and "results:" in run.stdout, run.why()


def test_summary(run):
    s = run.summary
    assert s["schema_version"] == 2
    assert s["status"] == "complete", s.get("error")
    assert s["error"] is None
    assert s["run_id"] == run.run_id
    assert s["scenario"] == "json" and s["runtime"] == "local"
    assert isinstance(s["started_at"], str) and isinstance(s["ended_at"], str)
    assert s["leftover_processes"] == [], "teardown missed processes that had to be killed"
    assert [p["replicas"] for p in s["points"]] == [1, 2]
    # trials alternate direction: 1, 2, then 2, 1
    assert [(t["replicas"], t["trial"], t["seq"]) for t in s["trials"]] == [
        (1, 1, 0),
        (2, 1, 1),
        (2, 2, 2),
        (1, 2, 3),
    ]
    assert s["trial_plan"] == {
        "trials": 2,
        "ci_target": 0.0,
        "max_trials": 10,
        "time_budget_s": 360.0,
        "warmup_trial_s": None,
    }
    assert s["load"] == {"model": "closed", "rate_rps": None}
    # the counter was read through every replica around each trial; json never writes
    assert s["consistency"]["consistent"] is True, s["consistency"]
    for t in s["trials"]:
        c = t["consistency"]
        assert c["consistent"] is True, c


def test_points_aggregate_their_trials(run):
    s = run.summary
    for p in s["points"]:
        mine = [t for t in s["trials"] if t["replicas"] == p["replicas"]]
        xs = [t["throughput_rps"] for t in mine]
        assert p["trials"] == 2 and p["throughput_trials"] == xs
        assert p["throughput_rps"] == pytest.approx(sum(xs) / 2, abs=0.01)
        # a t interval on the spread pooled over both N (2 df: too few to fit the probe's
        # slope, so the throughputs are raw)
        assert s["precision"]["used"] is False
        cv, df = precision.pooled_cv({q["replicas"]: q["throughput_trials"] for q in s["points"]})
        lo, hi = p["throughput_ci"]
        assert (lo, hi) == pytest.approx(precision.mean_ci(xs, cv, df), abs=0.01)
        assert all(t["host_speed"] > 0 for t in mine)  # the probe read every trial
        assert p["requests"] == sum(t["requests"] for t in mine)
        # merged histograms: the point's max is the largest trial max
        assert p["latency_ms"]["max"] == max(t["latency_ms"]["max"] for t in mine)
        assert p["valid"] == all(t["valid"] for t in mine)
        # /json in closed loop saturates the replicas' quota, nothing else
        assert p["bottleneck"]["component"] == "replicas", p["bottleneck"]
        assert p["bottleneck"]["util_of_budget"] > 0.8, p["bottleneck"]
    one, two = s["points"]
    # share-nothing /json scales about linearly; loose bounds for 4 s windows on a noisy host
    assert one["efficiency"] == 1.0 and 0.7 < two["efficiency"] < 1.3
    assert two["efficiency_ci"][0] <= two["efficiency"] <= two["efficiency_ci"][1]
    assert two["karp_flatt"] is not None


def test_trials_have_steady_state_checks(run):
    for t in run.summary["trials"]:
        # the per-second series covers warm-up and window; drift is judged on the window
        assert t["warmup_s"] == pytest.approx(2, abs=0.5)
        assert sum(r["requests"] for r in t["series"]) > t["requests"]
        assert t["drift"] is None or set(t["drift"]) >= {"change_rel", "flagged"}
        little = t["littles_law"]
        assert little["users"] == t["users"]
        assert little["implied_users"] == pytest.approx(
            little["throughput_rps"] * little["mean_latency_ms"] / 1000, rel=0.01
        )
        flagged = any(n.startswith("Little's law") for n in t["notes"])
        assert flagged == (abs(little["error_rel"]) > 0.10), (little, t["notes"])
    # closed loop, no think time, a generator with room: users = X x R within 10%
    within = [abs(t["littles_law"]["error_rel"]) < 0.10 for t in run.summary["trials"]]
    assert sum(within) >= len(within) / 2, within


def test_analysis_and_verdict(run):
    a = run.summary["analysis"]
    assert a is not None, run.summary.get("analysis_error")
    assert a["distinct_n"] == 2 and a["weak_fit"]  # two N cannot support a 3-parameter fit
    assert isinstance(a["verdict"], str) and len(a["verdict"]) > 40


def test_trial_fields_and_types(run):
    for p in run.summary["trials"]:
        assert set(p) >= POINT_KEYS, POINT_KEYS - set(p)
        assert isinstance(p["replicas"], int)
        assert isinstance(p["throughput_rps"], (int, float)) and p["throughput_rps"] > 0
        assert isinstance(p["requests"], int) and p["requests"] > 0
        assert isinstance(p["failures"], int) and 0 <= p["failures"] <= p["requests"]
        assert isinstance(p["valid"], bool)
        assert isinstance(p["notes"], list) and all(isinstance(n, str) for n in p["notes"])
        if not p["notes"]:
            assert p["valid"]
        lat = p["latency_ms"]
        for key in ("p50", "p95", "p99", "max"):
            assert isinstance(lat[key], (int, float)) and lat[key] > 0, (key, lat)
        assert lat["max"] >= lat["p99"] >= lat["p95"] >= lat["p50"]
        assert isinstance(p["per_replica_requests"], dict)
        assert isinstance(p["components"], dict)
        # throughput is successful responses over the measured window
        ok = p["requests"] - p["failures"]
        assert p["throughput_rps"] == pytest.approx(ok / p["duration_s"], rel=0.01)
        assert p["duration_s"] == pytest.approx(4, abs=1.0)


def test_every_replica_served_and_load_is_balanced(run):
    one, two = run.summary["points"]  # summed over trials
    assert set(one["per_replica_requests"]) == {"replica-1"}
    counts = two["per_replica_requests"]
    assert set(counts) == {"replica-1", "replica-2"}, counts
    total = sum(counts.values())
    # every successful response names its replica; a transport error has no header
    assert two["requests"] - two["failures"] <= total <= two["requests"]
    for name, count in counts.items():
        assert count > 0 and count / total >= 0.25, (name, counts)


def test_components_and_cpu_quota(run):
    config = run.manifest["config"]
    for p in run.summary["trials"]:
        comps = p["components"]
        replicas = {f"replica-{i}" for i in range(1, p["replicas"] + 1)}
        assert replicas | {"nginx", "store", "loadgen"} <= set(comps), sorted(comps)
        for name in replicas:
            c = comps[name]
            assert c["kind"] == "replica"
            assert c["budget_cpus"] == pytest.approx(config["replica_cpus"])
            # saturated by closed-loop /json: near its budget, not merely above 0
            assert c["cpu_cores"] > 0.7 * c["budget_cpus"], (name, c)
            # the quota holds: a saturated replica cannot use more than its budget
            assert c["cpu_cores"] <= c["budget_cpus"] * 1.15, (name, c)
        assert comps["loadgen"]["cpu_cores"] > 0.02, comps["loadgen"]


def test_manifest(run):
    m = run.manifest
    assert m["schema_version"] == 2 and m["run_id"] == run.run_id
    assert set(m["git"]) >= {"sha", "dirty"} and m["git"]["sha"]
    versions = m["versions"]
    for name in ("python", "locust", "gunicorn", "flask", "hdrhistogram"):
        assert versions.get(name), name
    assert "nginx" in (versions.get("nginx") or "") and versions.get("redis_server")
    assert m["host"]["cpu_count"] == os.cpu_count()
    assert isinstance(m["host"]["cpu_model"], str) and m["host"]["cpu_model"]
    mode, _ = cgroups.detect()
    expected = "none" if mode == "none" else f"cgroup-{mode}"
    assert m["runtime"]["name"] == "local" and m["runtime"]["cpu_limits"] == expected
    assert m["config"]["sweep"] == [1, 2] and m["config"]["scenario"] == "json"
    assert m["config"]["duration"] == 4.0 and m["config"]["warmup"] == 2.0
    assert m["started_at"] and m.get("status") == "complete" and m.get("ended_at")
    # Not root where the host allows; where it does not, the reason names the closed path.
    runs_as = m["runtime"]["runs_as"]["replicas"]
    assert runs_as == "nobody" or re.match(r"root \(/\S* is closed", runs_as), runs_as


def test_raw_files_per_trial(run):
    for p in run.summary["trials"]:
        raw = run.path / p["raw"]
        assert raw == run.path / "points" / f"n{p['replicas']}" / f"t{p['trial']}"
        stats = raw / "locust_stats.csv"
        assert stats.is_file()
        rows = list(csv.DictReader(stats.open()))
        assert any(r["Name"] == "Aggregated" for r in rows), rows
        assert (raw / "tally.json").is_file() and (raw / "locust.json").is_file()
    assert (run.path / "runtime" / "nginx.conf").is_file()


def test_locust_json_agrees_with_summary(run):
    """Locust's own final stats cover the same window as hscale's tally."""
    for p in run.summary["trials"]:
        entries = json.loads((run.path / p["raw"] / "locust.json").read_text())
        assert sum(e["num_requests"] for e in entries) == p["requests"]
        assert sum(e["num_failures"] for e in entries) == p["failures"]


def test_locust_stats_csv_covers_the_whole_window(run):
    """results/README.md: locust_stats.csv covers the measurement window; the listener
    promises 'Locust's CSV/JSON and hscale agree'. Locust rewrites the CSV once a second,
    so without a final write it misses the window's last second."""
    for p in run.summary["trials"]:
        rows = csv.DictReader((run.path / p["raw"] / "locust_stats.csv").open())
        total = next(int(r["Request Count"]) for r in rows if r["Name"] == "Aggregated")
        assert total == pytest.approx(p["requests"], rel=0.01), (
            f"N={p['replicas']}: locust_stats.csv counts {total} requests, summary {p['requests']}"
        )


def test_throughput_png(run):
    png = run.path / "throughput.png"
    assert png.is_file() and png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 5000


def test_latest_points_to_the_run(run):
    latest = run.results / "latest"
    assert latest.is_symlink() and os.readlink(latest) == run.run_id


def test_nothing_left_behind(run):
    assert wait_no_marked_processes(run.run_id, grace=1.0) == []
    assert cgroup_dirs(run.run_id) == []
    assert [p.name for p in run.tmpdir.glob(f"hscale-{run.run_id}*")] == []


def test_show_and_plot_read_the_run(run):
    shown = run_hscale(["show", str(run.path)], tmpdir=run.tmpdir)
    assert shown.returncode == 0, shown.stderr
    assert run.run_id in shown.stdout and "complete" in shown.stdout
    png = run.path / "throughput.png"
    png.unlink()
    plotted = run_hscale(["plot", str(run.path)], tmpdir=run.tmpdir)
    assert plotted.returncode == 0, plotted.stderr
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_second_run_gets_a_new_dir_and_leaves_the_first_intact(run):
    first_files = sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*"))
    second = bench(
        run.results,
        run.tmpdir,
        *("--sweep", "1", "--trials", "1", "--duration", "2", "--warmup", "1"),
        replicas=1,
    )
    try:
        assert second.returncode == 0, second.why()
        assert second.path != run.path and second.run_id != run.run_id
        assert (run.path / "summary.json").read_bytes() == run.summary_bytes
        assert sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*")) == first_files
        assert os.readlink(run.results / "latest") == second.run_id
        assert second.summary["status"] == "complete"
        assert [p["replicas"] for p in second.summary["points"]] == [1]
        assert wait_no_marked_processes(second.run_id, grace=1.0) == []
        assert cgroup_dirs(second.run_id) == []
    finally:
        clean_up_run(second.run_id)


def unreachable_target(space: dict, max_trials: int, *args: str) -> Run:
    """N = 1, 2 short trials, then a CI_TARGET far below any real spread: what stops the
    added trials is MAX_TRIALS or what `args` add (a time budget)."""
    return bench(
        space["results"],
        space["tmpdir"],
        *("--sweep", "1", "--trials", "2", "--ci-target", "0.0001"),
        *("--max-trials", str(max_trials), "--duration", "2", "--warmup", "1", *args),
        replicas=1,
    )


def test_time_budget_stops_added_trials_and_the_warmup_trial_is_discarded(space):
    """A target no run can meet and a budget of 25 s: the first rounds run, then added
    trials stop when the next would overrun; the warm-up trial is kept apart."""
    started = time.monotonic()
    run = unreachable_target(space, 10, "--time-budget", "25", "--warmup-trial", "2")
    assert run.returncode == 0, run.why()
    s = run.summary
    assert s["trial_plan"] == {
        "trials": 2,
        "ci_target": 0.0001,
        "max_trials": 10,
        "time_budget_s": 25.0,
        "warmup_trial_s": 2.0,
    }
    trials = len(s["trials"])
    assert 2 <= trials < 10  # (MAX_TRIALS, the other stop, is a unit test: test_trials.py)
    assert [(t["replicas"], t["trial"]) for t in s["trials"]] == [
        (1, k) for k in range(1, trials + 1)
    ]
    (point,) = s["points"]
    assert point["trials"] == trials and point["throughput_ci"] is not None
    status = s["precision_status"]
    assert status["stopped_by"] == "time budget" and status["reached"] is False
    assert status["time_budget_s"] == 25.0
    # the last trial ended within the budget; one more would have overrun it
    assert status["elapsed_s"] <= 25.0 < status["elapsed_s"] * (trials + 1) / trials
    warm = s["warmup_trial"]
    assert warm["replicas"] == 1 and warm["seconds"] >= 1.5 and warm["throughput_rps"] > 0
    assert (run.path / warm["raw"]).is_dir()
    assert all(t["trial"] >= 1 for t in s["trials"])
    assert "not reached (time budget)" in run.stdout
    assert time.monotonic() - started < 120


def one_trial_each(space: dict[str, Path], *knobs: str) -> Run:
    """A short sweep of N = 1, 2, one 2-second trial each, with these knobs."""
    short = ("--sweep", "1 2", "--trials", "1", "--duration", "2", "--warmup", "1")
    return bench(space["results"], space["tmpdir"], *short, *knobs, replicas=2)


def test_balance_host_tops_the_ballast_up_below_the_largest_n(space):
    """BALANCE_HOST=1: the warm-up trial measures the rest of the host, the N = 1 trials
    run beside a top-up loop sized from it, the largest N beside none; nothing is left."""
    run = one_trial_each(space, "--warmup-trial", "2", "--balance-host", "1")
    try:
        assert run.returncode == 0, run.why()
        s = run.summary
        assert s["warmup_trial"]["others_cores"] > 0  # Locust and nginx at least
        topup = {t["replicas"]: t["ballast_topup_cores"] for t in s["trials"]}
        assert topup[2] == 0.0 and 0.02 <= topup[1] <= 2.0, topup
        assert run.manifest["config"]["balance_host"] is True
        assert wait_no_marked_processes(run.run_id, grace=1.0) == []
        assert cgroup_dirs(run.run_id) == []
    finally:
        clean_up_run(run.run_id)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="CPU_SPLIT needs 2 CPUs")
def test_cpu_split_gives_the_replicas_cpus_of_their_own(space):
    """CPU_SPLIT=1, read back from the kernel: the replicas (every process of each tree),
    the ballast and the speed probe on the last CPU; nginx, the store and the harness,
    which starts Locust, on the others. Each trial is judged on the CPUs beside the
    replicas, and nothing is left."""
    cpus = sorted(os.sched_getaffinity(0))
    mine, rest = str(cpus[-1]), ",".join(map(str, cpus[:-1]))
    run = one_trial_each(space, "--cpu-split", "1")
    try:
        assert run.returncode == 0, run.why()
        split = run.summary["cpu_split"]
        assert (split["replicas"], split["others"]) == ([cpus[-1]], cpus[:-1])
        seen = split["observed"]
        assert {k: seen[k] for k in ("replica-1", "replica-2", "ballast", "probe")} == {
            "replica-1": mine, "replica-2": mine, "ballast": mine, "probe": mine,
        }  # fmt: skip
        assert {k: seen[k] for k in ("nginx", "store", "harness")} == dict.fromkeys(
            ("nginx", "store", "harness"), rest
        )
        assert "cpu split: replicas, ballast and probe on CPU" in run.stderr
        for t in run.summary["trials"]:
            assert not any(n.startswith("host CPU saturated") for n in t["notes"]), t["notes"]
        assert run.manifest["config"]["cpu_split"] == "1"
        assert wait_no_marked_processes(run.run_id, grace=1.0) == []
        assert cgroup_dirs(run.run_id) == []
    finally:
        clean_up_run(run.run_id)


def test_resizes_start_replicas_side_by_side_and_drain_nginx_before_stopping(space):
    """N = 1, 3, 3, 1: growing by two boots both replicas at once; shrinking by two first
    takes them out of nginx and waits for its old workers, so the check right after
    (every endpoint through nginx) never meets a stopped replica. Before, nginx's old
    workers still sent requests to the two stopped replicas and, with two tries per
    request, answered 502 and failed the sweep."""
    short = ("--sweep", "1 3", "--trials", "2", "--duration", "1", "--warmup", "1")
    run = bench(space["results"], space["tmpdir"], *short, replicas=3)
    try:
        assert run.returncode == 0, run.why()
        s = run.summary
        assert [(t["replicas"], t["trial"]) for t in s["trials"]] == [
            (1, 1),
            (3, 1),
            (3, 2),
            (1, 2),
        ]
        assert all(t["failures"] == 0 for t in s["trials"]), [t["errors"] for t in s["trials"]]
        assert s["trials"][-1]["per_replica_requests"].keys() == {"replica-1"}
        # gunicorn logs nothing here, so a log's inode changed last when it was created:
        # one after the other, replica-3 would have started after replica-2 answered.
        logs = run.path / "runtime" / "logs"
        born = [(logs / f"replica-{i}.log").stat().st_ctime for i in (2, 3)]
        assert abs(born[1] - born[0]) < 0.5, born
    finally:
        clean_up_run(run.run_id)
