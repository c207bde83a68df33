"""The sweep: for each (N, trial), resize, verify, warm up, measure; results after each.

A `Sweep` carries the run's state (settings, run directory, runtime, summary, trials, the
ballast and the speed probe), as Locust's Environment does, and its methods are the
steps: begin, place (start or resize, ballast, verify), warm_up, measure, record, plan_more,
teardown. `run_sweep` strings them together. Which trials run is schedule.py's; what a
trial records is trial.py's; what the record means is analysis/'s.
"""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from hscale import cgroups, cpusplit, loadgen, paths, procs, smoke, sysinfo
from hscale.analysis import aggregate, consistency, precision
from hscale.analysis.advice import advice
from hscale.balance import others_cores, top_up_cores
from hscale.ballast import Ballast
from hscale.cgroups import CpuGroup
from hscale.probe import Probe, speed
from hscale.results import SCHEMA_VERSION, RunDir, now_iso
from hscale.runtimes.base import Runtime
from hscale.schedule import (
    extra_trials,
    more_loadgen_workers,
    next_trial_cost,
    precision_status,
    trial_order,
    wanted_trials,
)
from hscale.settings import Settings, bench_command
from hscale.target import scenario_name
from hscale.trial import Stage, host_counters, make_trial, stored_histogram
from hscale.verify import read_counters, verify

# Wall seconds a trial takes beyond its warm-up and window (Locust's start, a resize's
# share, the judging): 1.5 to 2 s on docker and local here (docs/measurement.md). Only the
# progress bar's first estimate uses it; the bar then follows the sweep's own clock.
OVERHEAD_S = 2.0
Progress = Callable[[str, float], None]


class StackLost(RuntimeError):
    """A replica, the store or nginx died while a trial measured."""


class Interrupted(Exception):
    """SIGTERM or SIGHUP: handled like Ctrl-C."""


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Interrupted inside, and Ctrl-C KeyboardInterrupt even where
    the parent left SIGINT ignored (a job a non-interactive shell started with `&`)."""
    old = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """Teardown: a second Ctrl-C or SIGTERM must not leave processes behind."""
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    prev = {sig: signal.signal(sig, signal.SIG_IGN) for sig in held}
    try:
        yield
    finally:
        for sig, handler in prev.items():
            signal.signal(sig, handler)


def new_summary(s: Settings, rd: RunDir, runtime: Runtime, prior: dict) -> dict:
    """summary.json as it starts; with `prior` (a comparison's later round) its trials,
    points and analysis carry on."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": rd.run_id,
        "status": "running",
        "started_at": prior.get("started_at") or now_iso(),
        "ended_at": None,
        "error": None,
        "scenario": scenario_name(runtime.target, s),
        "target": runtime.target.as_dict(),
        "runtime": runtime.name,
        "load": {"model": s.load, "rate_rps": s.rate},
        "trial_plan": prior.get("trial_plan")
        or {
            "trials": s.trials,
            "ci_target": s.ci_target,
            "max_trials": s.max_trials,
            "time_budget_s": s.time_budget or None,
            "warmup_trial_s": s.warmup_trial or None,
        },
        "trials": list(prior.get("trials") or []),
        "points": prior.get("points") or [],
        "precision": prior.get("precision"),
        "precision_status": None,
        "warmup_trial": prior.get("warmup_trial"),
        "analysis": prior.get("analysis"),
        "analysis_error": None,
        "consistency": prior.get("consistency"),
        "leftover_processes": [],
    }


class Sweep:
    """One run's state and its steps (see the module's docstring)."""

    def __init__(
        self, s: Settings, rd: RunDir, runtime: Runtime, progress: Progress,
        log: Callable[[str], None], prior: dict,
    ) -> None:  # fmt: skip
        self.s, self.rd, self.runtime, self.progress, self.log = s, rd, runtime, progress, log
        self.resumed = bool(prior)
        self.summary = new_summary(s, rd, runtime, prior)
        self.trials: list[dict] = self.summary["trials"]
        self.histograms = {
            (t["replicas"], t["trial"]): stored_histogram(rd.path / t["raw"]) for t in self.trials
        }
        logs = rd.path / "runtime" / "logs"
        self.ballast = Ballast(rd.run_id, s.replica_cpus, logs, s.cpu_period_us)
        self.probe = Probe(rd.run_id, logs)
        self.split, self.split_reason = split_of(s, runtime)
        self.own_cpus = cpusplit.available()  # the harness's, given back at teardown
        self.loadgen_group: CpuGroup | None = None
        self.mf: dict = {}
        first = 1 + max((t["trial"] for t in self.trials), default=0)
        self.queue = trial_order(s.sweep, s.trials, first)
        self.done_here = 0  # trials finished by this process
        self.workers = s.loadgen_workers
        self.attempt = 0  # > 0: the trial at the head of the queue runs again
        self.running: int | None = None  # N now up
        self.clock: float | None = None  # when the stack first answered: TIME_BUDGET counts from it
        self.warm_s = 0.0  # the warm-up trial's wall time, not a measured trial's cost
        self.stopped_by: str | None = None
        self.smoked = False  # your Locust file's routes were tried once (smoke.py)
        self.draining: loadgen.LoadRun | None = None  # a trial's Locust writing its CSVs
        self.interim, self.last_cost = False, 0.0  # summary.json's analysis is an interim one
        self.added = False  # the queue holds trials plan_more added (the budget may drop them)
        self.resized = False  # the trial now placed needed a resize
        self.costs: list[tuple[bool, float]] = []  # (resized, wall s) of each trial recorded
        self.mark: float | None = None  # elapsed() when the last trial was recorded

    # -- steps ------------------------------------------------------------------------
    def begin(self) -> None:
        """Provenance first, then warnings about what this host cannot do."""
        s, rd = self.s, self.rd
        self.split_cpus()
        self.write_manifest()
        self.summary["server"] = self.mf["runtime"].get("gunicorn")
        self.summary["cpu_limits"] = self.mf["runtime"]["cpu_limits"]
        from hscale.loadgen_check import latest_for  # it imports this module: not at the top

        self.summary["loadgen_check"] = latest_for(Path(s.results), self.runtime.name, s.cpu_split)
        rd.write_summary(self.summary)
        if not self.resumed:
            rd.point_to_latest()
        if s.ballast and not self.ballast.usable:
            self.log(f"[warning] no ballast: it needs a cgroup CPU quota ({self.ballast.reason})")
        if not self.probe.usable:
            self.log(
                f"[warning] no host speed probe: it needs a cgroup CPU quota ({self.probe.reason})"
            )
        if self.limits == "none":
            self.log(
                "[warning] no per-replica CPU limits: "
                f"{self.mf['runtime']['cpu_limits_reason']}; every point will be marked "
                "oversubscribed"
            )
        self.probe.start()

    def split_cpus(self) -> None:
        """CPU_SPLIT: the replicas' CPUs for the runtime, ballast and probe; the harness
        (and all it starts from now on: Locust, nginx, the store) moves to the others."""
        split = self.split
        self.summary["cpu_split"] = split.as_dict() if split else None
        if split is None:
            if self.split_reason:
                self.log(f"[note] CPU_SPLIT: not split: {self.split_reason}")
            return
        self.runtime.replica_cpuset = self.ballast.cpuset = self.probe.cpuset = split.replicas
        cpusplit.pin_self(split.others)
        self.log(
            f"cpu split: replicas, ballast and probe on CPU {cpusplit.cpu_list(split.replicas)}, "
            f"the rest on CPU {cpusplit.cpu_list(split.others)}"
        )

    def observe_split(self) -> None:
        """CPU_SPLIT, read back after a trial (every loop has long exec'd by then): the
        proof that the split holds for every part."""
        if not self.split:
            return
        seen = self.summary["cpu_split"].setdefault("observed", {})
        loops = [p for proc, _ in self.ballast.loops for p in proc.tree()]
        seen.update(
            self.runtime.cpusets()
            | {"harness": cpusplit.cpu_list(cpusplit.available())}
            | ({"probe": cpusplit.tree_cpus(self.probe.proc.tree())} if self.probe.proc else {})
            | ({"ballast": cpusplit.tree_cpus(loops)} if loops else {})
        )

    def place(self, n: int, label: str) -> None:
        """N replicas up, answering through nginx, with the ballast beside them."""
        self.progress(f"{label}: starting {n} replica(s)", self.elapsed())
        if self.running is None:
            self.runtime.start(n)
            self.write_manifest()  # now the runtime knows how it ran (e.g. which image path)
        elif n != self.running:
            self.runtime.resize(n)
        self.resized = self.running is not None and n != self.running
        self.running = n
        if self.clock is None:
            self.clock = time.monotonic()
        if self.s.ballast:
            self.ballast.resize(max(self.s.sweep) - n)
            if self.s.balance_host:
                self.ballast.top_up(top_up_cores(self.others(), n, max(self.s.sweep)))
        self.progress(f"{label}: verifying endpoints through nginx", self.elapsed())
        target = self.runtime.target
        verify(
            self.runtime.endpoint, self.runtime.upstreams(), shared=self.s.store != "memory",
            reference=target.reference, health_path=target.health_path,
        )  # fmt: skip
        if not target.reference and not self.smoked:
            self.progress(f"{label}: every route of {target.locustfile.name} once", self.elapsed())
            smoke.check_routes(self.load, n, self.rd.path / "points" / "smoke")
            self.smoked = True

    def others(self) -> list[tuple[int, float]]:
        """(N, host CPU beside the replicas and loops) of the warm-up and every trial."""
        warm = self.summary["warmup_trial"] or {}
        rows = [(warm["replicas"], warm["others_cores"])] if warm.get("others_cores") else []
        for t in self.trials:
            cores = others_cores(t)
            if cores is not None:
                rows.append((t["replicas"], cores))
        return rows

    def warm_up(self, n: int) -> None:
        """The first trial of a cold stack and host runs slow: load it once, discard it."""
        s, summary = self.s, self.summary
        if not s.warmup_trial or self.resumed or summary["warmup_trial"] is not None:
            return
        self.progress(f"N={n}: warm-up trial ({s.warmup_trial:g} s, discarded)", self.elapsed())
        out = self.rd.path / "points" / "warmup"
        t0 = time.monotonic()
        run, plan, hs = self.load(n, s.warmup_trial, 0.0, out, lambda phase: None, True)
        self.draining = run
        self.warm_s = time.monotonic() - t0
        seconds = run.tally["duration_s"]
        ok = run.tally["requests"] - run.tally["failures"]
        stage = Stage(s, self.runtime, self.limits, self.rd.path)
        others = others_cores(make_trial(stage, n, 0, -1, plan, run, out, hs))
        summary["warmup_trial"] = {
            "replicas": n,
            "seconds": round(seconds, 2),
            "throughput_rps": round(ok / seconds, 2) if seconds > 0 else None,
            "host_speed": hs,
            "others_cores": None if others is None else round(others, 3),
            "raw": str(out.relative_to(self.rd.path)),
        }
        if s.ballast and s.balance_host:  # the first measured trial is sized from it
            self.ballast.top_up(top_up_cores(self.others(), n, max(s.sweep)))

    def measure(self, n: int, k: int, label: str) -> tuple[dict, str | None]:
        """Trial k at N: its record, and the histogram; (record, None) when it must run
        again with more Locust workers (kept on disk, listed in retried_trials)."""
        s, runtime = self.s, self.runtime
        checked = runtime.target.reference  # the consistency check needs its endpoints
        before = read_counters(runtime.endpoint, runtime.upstreams()) if checked else None
        users = s.users_at(n)
        out = self.rd.trial_dir(n, k, self.attempt)

        def tick(phase: str) -> None:
            self.progress(f"{label} ({users} users): {phase}", self.elapsed())

        run, plan, host_speed = self.load(n, s.warmup + s.duration, s.warmup, out, tick, True)
        self.draining = run
        self.observe_split()
        lost = runtime.casualties()
        stage = Stage(s, runtime, self.limits, self.rd.path)
        if lost:  # kept, not valid, and the sweep stops: the stack is not what was asked
            trial = make_trial(stage, n, k, len(self.trials), plan, run, out, host_speed)
            trial["notes"] += [f"{what} during measurement" for what in lost]
            trial["valid"], trial["consistency"] = False, None
            self.record(trial, run.tally["histogram"])
            raise StackLost(
                f"{'; '.join(lost)} during the measurement of N={n} trial {k}; the trial is "
                f"kept in summary.json, marked not valid"
            )
        after = read_counters(runtime.endpoint, runtime.upstreams()) if checked else None
        trial = make_trial(stage, n, k, len(self.trials), plan, run, out, host_speed)
        trial["ballast_topup_cores"] = (
            self.ballast.topup_cores if s.ballast and s.balance_host else None
        )
        trial["consistency"] = (
            consistency.judge(run.tally.get("consistency"), before, after) if checked else None
        )
        more = more_loadgen_workers(trial, s, self.workers)
        if more is None:
            return trial, run.tally["histogram"]
        self.log(f"{label}: load generator saturated; again with {more} Locust workers")
        self.summary.setdefault("retried_trials", []).append(
            {"replicas": n, "trial": k, "raw": trial["raw"], "notes": trial["notes"]}
        )
        self.workers, self.attempt = more, self.attempt + 1
        return trial, None

    def record(self, trial: dict, histogram: str) -> None:
        """Keep the trial, re-derive everything from the trials so far, write it."""
        self.queue.pop(0)
        self.attempt, self.done_here = 0, self.done_here + 1
        self.trials.append(trial)
        self.histograms[(trial["replicas"], trial["trial"])] = histogram
        now = self.elapsed()
        self.costs.append((self.resized, now - (self.warm_s if self.mark is None else self.mark)))
        self.mark, self.last_cost = now, self.trial_cost()
        judge(self.summary, self.trials, self.histograms, self.s, self.last_cost, final=False)
        self.interim = True  # teardown judges again, in full
        self.summary["precision_status"] = precision_status(
            self.summary["points"], self.s, self.elapsed(), self.stopped_by
        )
        self.rd.write_summary(self.summary)

    def plan_more(self) -> None:
        """The queue is empty: add what the precision target and the budget call for."""
        s, points = self.s, self.summary["points"]
        room = None
        if s.time_budget:  # the trials so far say what one costs here, resizes included
            room = max(0, int((s.time_budget - self.elapsed()) // self.trial_cost()))
        found = self.summary["analysis"]
        self.queue = [
            (m, 1 + max(t["trial"] for t in self.trials if t["replicas"] == m))
            for m in extra_trials(points, s, self.running, room, found)
        ]
        self.added = bool(self.queue)
        if not self.queue and wanted_trials(points, s, found):
            self.stopped_by = "time budget" if room == 0 else "max trials"

    def out_of_budget(self) -> bool:
        """Before each added trial: would it end past TIME_BUDGET? plan_more counts the room
        in trials of the mean cost, and a trial that resizes costs more than one that does
        not, so the room is checked again against the clock; what no longer fits is
        dropped. The TRIALS rounds always run."""
        budget = self.s.time_budget
        if not (self.added and budget and self.queue):
            return False
        resizes = self.queue[0][0] != self.running
        if self.elapsed() + next_trial_cost(self.costs, resizes) <= budget:
            return False
        self.queue, self.stopped_by = [], "time budget"
        return True

    def stop(self, exc: BaseException) -> None:
        """Record how the run ended early: interrupted (finished trials kept) or failed."""
        if isinstance(exc, KeyboardInterrupt | Interrupted):
            self.summary["status"] = "interrupted"
            cause = str(exc) or "SIGINT"
            self.summary["error"] = (
                f"interrupted ({cause}) after {self.done_here} finished trial(s)"
            )
        else:
            self.summary["status"] = "failed"
            self.summary["error"] = f"{type(exc).__name__}: {exc}"
            (self.rd.path / "error.txt").write_text(traceback.format_exc())

    def teardown(self) -> None:
        """Stop everything this run started; the summary gets its final status and times."""
        summary = self.summary
        self.progress("tearing down", self.elapsed())
        steps: list[tuple[str, Callable[[], object]]] = [
            ("load generator", self.finish_load),
            ("ballast", self.ballast.stop),
            ("speed probe", self.probe.stop),
            ("load generator's cgroup", self._remove_loadgen_group),
            (f"{self.runtime.name} runtime", self.runtime.stop),
            ("CPU split", lambda: cpusplit.pin_self(self.own_cpus)),
        ]
        failed = []
        for what, step in steps:  # each step on its own: one failure must not skip the rest
            try:
                step()
            except Exception as exc:  # noqa: BLE001  (recorded in the summary, shown)
                failed.append(f"stopping the {what}: {type(exc).__name__}: {exc}")
        summary["leftover_processes"] = procs.kill_leftovers(self.rd.run_id)
        if self.interim:
            try:
                judge(summary, self.trials, self.histograms, self.s, self.last_cost)
            except Exception as exc:  # noqa: BLE001  (the interim analysis stays; shown)
                failed.append(f"the final analysis: {type(exc).__name__}: {exc}")
        if failed:
            summary["teardown_errors"] = failed
            self.log("[warning] teardown: " + "; ".join(failed))
        if summary["status"] == "running":  # never left "running" on disk
            summary["status"] = "failed"
            summary["error"] = summary.get("error") or "the sweep ended without a status"
        summary["ended_at"] = now_iso()
        if summary["precision_status"]:  # as the last trial left it, and why it stopped
            summary["precision_status"] = precision_status(
                summary["points"], self.s, summary["precision_status"]["elapsed_s"],
                self.stopped_by,
            )  # fmt: skip
        self.rd.write_summary(summary)
        if self.mf:
            self.rd.write_manifest(
                {**self.mf, "ended_at": summary["ended_at"], "status": summary["status"]}
            )

    # -- helpers ----------------------------------------------------------------------
    def _remove_loadgen_group(self) -> None:
        if self.loadgen_group is not None:
            self.loadgen_group.remove()

    @property
    def limits(self) -> str:
        return self.mf["runtime"]["cpu_limits"]

    def write_manifest(self) -> None:
        self.mf = manifest(self.s, self.rd, self.runtime, self.summary["started_at"])
        self.rd.write_manifest(self.mf)

    def elapsed(self) -> float:
        return time.monotonic() - (self.clock or time.monotonic())

    def trial_cost(self) -> float:
        """Wall seconds per measured trial so far, resizes included, warm-up not."""
        return (self.elapsed() - self.warm_s) / max(1, self.done_here)

    def finish_load(self) -> None:
        """The last trial's Locust has written its files and exited."""
        if self.draining is not None:
            self.draining.finish()
            self.draining = None

    def load(
        self,
        n: int,
        seconds: float,
        warmup: float,
        out: Path,
        tick: Callable[[str], None],
        linger: bool = False,
    ) -> tuple[loadgen.LoadRun, loadgen.LocustPlan, float | None]:
        """One Locust run at N: its LoadRun, its plan and the host speed over it. With
        `linger`, Locust may still be writing its CSV files (finish_load waits)."""
        self.finish_load()
        s, readings = self.s, []

        def counters() -> dict:
            reading = self.probe.reading()
            readings.append(reading)
            probe_s = reading[1] if reading else 0
            return {**self.runtime.counters(), **host_counters(self.ballast, probe_s)}

        own = self.runtime.target.locustfile
        plan = loadgen.LocustPlan(
            s.scenario, self.runtime.endpoint, s.users_at(n), seconds, self.workers,
            load=s.load, rate=s.rate,
            own_file=None if own == paths.locustfile(s.scenario) else str(own),
        )  # fmt: skip
        if s.loadgen_cpus and self.loadgen_group is None:
            self.loadgen_group = CpuGroup(
                cgroups.detect()[0], f"hscale-{self.rd.run_id}/loadgen", s.loadgen_cpus
            )
        run = loadgen.run_point(
            plan, warmup, out, self.rd.run_id, counters, tick,
            self.runtime.loadgen_launcher(), self.loadgen_group, linger,
        )  # fmt: skip
        hs = speed(readings[0], readings[-1]) if len(readings) >= 2 else None
        return run, plan, hs


def run_sweep(
    s: Settings,
    rd: RunDir,
    runtime: Runtime,
    progress: Progress = lambda text, done: None,
    log: Callable[[str], None] = print,
    prior: dict | None = None,
) -> dict:
    """Run every (N, trial); returns the final summary. Always tears the runtime down.

    The caller has run runtime.preflight(), so usage errors came before anything started.
    With `prior` (the run's summary so far), its trials are kept and new ones are numbered
    after them: how a store comparison interleaves rounds of trials across stores.
    TRIALS rounds always run; then trials are added where the CIs are widest until
    CI_TARGET is met, MAX_TRIALS reached or the next trial would overrun TIME_BUDGET
    (counted from the moment the stack first answered, so image builds are not in it).
    """
    sweep = Sweep(s, rd, runtime, progress, log, prior or {})
    with interruptible():
        try:
            sweep.begin()
            while sweep.queue and not sweep.out_of_budget():
                n, k = sweep.queue[0]
                label = f"N={n} trial {k}"
                sweep.place(n, label)
                sweep.warm_up(n)
                trial, histogram = sweep.measure(n, k, label)
                if histogram is not None:
                    sweep.record(trial, histogram)
                if not sweep.queue:
                    sweep.plan_more()
            sweep.summary["status"] = "complete"
        except (KeyboardInterrupt, Interrupted, Exception) as exc:  # recorded; caller exits 1
            sweep.stop(exc)
        finally:
            with uninterruptible():
                sweep.teardown()
    return sweep.summary


def split_of(s: Settings, runtime: Runtime) -> tuple[cpusplit.Split | None, str]:
    """The CPU split this run uses, or None and why (empty: not asked for)."""
    if s.cpu_split == "0":
        return None, ""
    if runtime.name == "swarm":
        return None, "the swarm runtime places replicas on nodes, not CPUs"
    return cpusplit.plan(cpusplit.available(), max(s.sweep) * s.replica_cpus)


def manifest(s: Settings, rd: RunDir, runtime: Runtime, started: str) -> dict:
    info = runtime.info()
    binaries: dict[str, str] = {
        k: info.details[k] for k in ("nginx", "redis_server") if k in info.details
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": rd.run_id,
        "command": "hscale bench",
        "git": sysinfo.git(),
        "versions": sysinfo.versions(binaries),
        "host": sysinfo.host(),
        "runtime": {
            "name": info.name,
            "cpu_limits": info.cpu_limits,
            "cpu_limits_reason": info.cpu_limits_reason,
            **info.details,
        },
        "config": s.as_dict(),
        "target": runtime.target.as_dict(),
        "started_at": started,
    }


def analysis_of(summary: dict, bootstrap: bool = True) -> dict | None:
    """The scaling fit and verdict over the trials so far; None below two distinct N."""
    from hscale.analysis.analyze import analyze, fit_input, fitted_params

    if summary["load"]["model"] == "rate":
        raise ValueError(
            "open loop (LOAD=rate): throughput is the offered rate at every N, so no scaling "
            "model is fitted; read latency vs N, and achieved vs offered rate, instead"
        )
    if len({t["replicas"] for t in summary["trials"]}) < 2:
        return None
    measurements, fit_on = fit_input(summary)
    return analyze(measurements, summary["points"], fit_on, fitted_params(summary), bootstrap)


def judge(
    summary: dict,
    trials: list[dict],
    histograms: dict,
    s: Settings,
    trial_s: float,
    final: bool = True,
) -> None:
    """Everything summary.json derives from the trials so far: the speed adjustment,
    consistency, points, the scaling analysis and, where it cannot decide, what would
    (trial_s: the wall time one trial takes here). Not `final`: between trials, without
    the bootstrap of a fit on a bound (half a second a trial); teardown judges again."""
    closed = s.load == "closed"  # open loop: throughput is the offered rate
    cv = precision.control_variate(trials, s.speed_adjust and closed, s.drift_adjust and closed)
    for t, x in zip(trials, cv.pop("adjusted"), strict=True):
        t["throughput_adj_rps"] = x if cv["used"] else None
    summary["precision"] = cv
    checked = [t["consistency"] for t in trials if t.get("consistency") is not None]
    # None: not checked (your app has not the reference endpoints the check needs).
    summary["consistency"] = consistency.summarize(checked) if checked else None
    summary["points"] = aggregate.points(trials, histograms, closed, fitted=cv["fitted"])
    try:
        summary["analysis"], summary["analysis_error"] = analysis_of(summary, final), None
    except ValueError as exc:  # a fit that cannot be made is reported, not fatal
        summary["analysis"], summary["analysis_error"] = None, str(exc)
    found = summary["analysis"]
    if found:
        per_n = {p["replicas"]: p["trials"] for p in summary["points"]}
        found["advice"] = advice(found, per_n, s.sweep, trial_s, bench_command(s))
        if found["advice"]:
            found["verdict"] += " " + found["advice"]
