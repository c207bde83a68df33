"""The sweep: for each (N, trial), resize, verify, warm up, measure; results after each."""

from __future__ import annotations

import json
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from analysis import aggregate, components, consistency, latency, precision, validity
from analysis.advice import advice, undecided
from hscale import cgroups, loadgen, procs, sysinfo
from hscale.ballast import Ballast
from hscale.cgroups import CpuCounters, CpuGroup
from hscale.probe import Probe, speed
from hscale.results import SCHEMA_VERSION, RunDir, now_iso
from hscale.runtimes.base import Runtime
from hscale.settings import RESERVED_CPUS, Settings, bench_command
from hscale.verify import read_counters, verify

# Start-up, verification and Locust start per point, for the time-left estimate.
OVERHEAD_S = 6.0


class Interrupted(Exception):
    """SIGTERM or SIGHUP: handled like Ctrl-C."""


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def oversubscription(s: Settings, n: int, limits: str) -> str | None:
    if limits == "none":
        return "no per-replica CPU limit could be set, so the replicas share the host's CPUs"
    if not s.fits_host(n):
        return (
            f"{n} x {s.replica_cpus:g} CPU + {RESERVED_CPUS:g} reserved for nginx, store and "
            f"load generator > {s.host_cpus} host CPUs"
        )
    return None


def host_counters(ballast: Ballast, probe_cpu_s: float = 0.0) -> dict[str, CpuCounters]:
    """Whole-host busy CPU, and the share of it of hscale's own loops, the ballast and
    the speed probe (to be subtracted)."""
    t = psutil.cpu_times()
    # guest time is already inside user; steal is time the hypervisor kept from us.
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return {
        "host": CpuCounters(cpu_s=busy),
        "ballast": CpuCounters(cpu_s=ballast.cpu_seconds() + probe_cpu_s),
    }


def throttling(comps: dict[str, dict], s: Settings, lat: dict) -> dict:
    """How much the replicas' CFS quota shows in the trial: the share of periods that
    ended throttled (mean over replicas), the stall one such period adds, and the latency
    percentiles that stall dominates (analysis/latency.py)."""
    shares = [
        c["throttled_periods"]
        for c in comps.values()
        if c["kind"] == "replica" and c.get("throttled_periods") is not None
    ]
    share = round(sum(shares) / len(shares), 4) if shares else None
    stall = latency.throttle_stall_ms(s.replica_cpus, s.cpu_period_us)
    return {
        "period_us": s.cpu_period_us,
        "throttled_period_share": share,
        "stall_ms": round(stall, 2),
        "dominated_percentiles": latency.throttle_dominated(lat, stall, share),
    }


def make_trial(
    n: int,
    trial: int,
    seq: int,
    plan: loadgen.LocustPlan,
    run: loadgen.LoadRun,
    runtime: Runtime,
    s: Settings,
    limits: str,
    out: Path,
    run_root: Path,
    host_speed: float | None = None,
) -> dict:
    """One trial's record from the raw tally and CPU counters."""
    tally = run.tally
    seconds = tally["duration_s"]
    comps = runtime.components()
    # Its quota, else one core per Locust process that generates load (the master of
    # workers only merges).
    loadgen_budget = s.loadgen_cpus or float(max(1, plan.workers))
    budgets = {c.name: c.budget_cpus for c in comps} | {"loadgen": loadgen_budget}
    kinds = {c.name: c.kind for c in comps} | {"loadgen": "loadgen"}
    cpu = components.cpu_usage(run.counters_start, run.counters_end, seconds, budgets, kinds)
    host, ballast = cpu.pop("host", None), cpu.pop("ballast", None)
    busy = host["cpu_cores"] - (ballast["cpu_cores"] if ballast else 0.0) if host else None
    requests, failures = tally["requests"], tally["failures"]
    throughput = (requests - failures) / seconds if seconds > 0 else 0.0
    lat = latency.percentiles_ms(tally["histogram"])
    over = oversubscription(s, n, limits)
    drift = validity.drift(tally["series"], tally["warmup_s"], seconds)
    little = (
        validity.littles_law(plan.users, requests, seconds, lat["mean"])
        if plan.load == "closed"
        else None
    )
    open_loop = None
    if plan.load == "rate" and plan.rate:
        achieved = requests / seconds if seconds > 0 else 0.0
        open_loop = {
            **(tally.get("open_loop") or {}),
            "offered_rps": plan.rate,
            "achieved_rps": round(achieved, 2),
            "achieved_ratio": round(achieved / plan.rate, 4),
        }
    notes = validity.validity_notes(
        requests=requests,
        failures=failures,
        per_replica_requests=tally["per_replica_requests"],
        expected_replicas=runtime.replicas(),
        cpu_warnings=tally["cpu_warnings"],
        loadgen_cpu=cpu.get("loadgen", {}).get("util_of_budget"),
        oversubscribed=over,
        host_busy_cores=busy,
        host_cpus=s.host_cpus,
        drift=drift,
        littles_law=little,
    )
    return {
        "replicas": n,
        "trial": trial,
        "seq": seq,
        "users": plan.users,
        "loadgen_workers": tally.get("workers", 0),
        "duration_s": round(seconds, 3),
        "warmup_s": round(tally["warmup_s"], 3),
        "throughput_rps": round(throughput, 2),
        # Work per CPU-ms of the speed probe during the window (hscale/probe.py).
        "host_speed": host_speed,
        "requests": requests,
        "failures": failures,
        "failure_rate": round(failures / requests, 5) if requests else None,
        "latency_ms": lat,
        "throttling": throttling(cpu, s, lat),
        "per_replica_requests": dict(sorted(tally["per_replica_requests"].items())),
        "components": aggregate.with_demand(cpu, throughput),
        "host": {"cpus": s.host_cpus, "busy_cores": None if busy is None else round(busy, 3)},
        "loadgen_cpu_warnings": tally["cpu_warnings"],
        "series": tally["series"],
        "drift": drift,
        "littles_law": little,
        "open_loop": open_loop,
        "oversubscribed": over is not None,
        "valid": not notes,
        "notes": notes,
        "warnings": validity.open_loop_warnings(open_loop),
        "errors": tally["errors"],
        "raw": str(out.relative_to(run_root)),
    }


def trial_order(sweep: Sequence[int], trials: int, first: int = 1) -> list[tuple[int, int]]:
    """(N, trial) in run order: ascending N, then descending, and so on, so a slow drift
    of the machine does not fall on one end of the curve, and each turn reuses the N
    already running. Trials are numbered from `first` (a resumed run goes on counting)."""
    order = []
    for k in range(first, first + trials):
        ns = sorted(sweep) if k % 2 else sorted(sweep, reverse=True)
        order += [(n, k) for n in ns]
    return order


def needs_more_trials(points: Sequence[dict], ci_target: float, max_trials: int) -> list[int]:
    """N whose CI half-width is above ci_target of its mean, below the cap of trials."""
    if not ci_target:
        return []
    out = []
    for p in points:
        ci, x = p["throughput_ci"], p["throughput_rps"]
        wide = ci is None or (x > 0 and (ci[1] - ci[0]) / 2 / x > ci_target)
        if wide and p["trials"] < max_trials:
            out.append(p["replicas"])
    return out


def more_loadgen_workers(trial: dict, s: Settings, workers: int) -> int | None:
    """After a trial whose load generator saturated: more Locust processes, if the host
    has a spare core for one beyond the replicas' budgets, nginx, the store and the
    Locust processes already running; else None (the trial stays invalid)."""
    if s.loadgen_cpus or not any(
        note.startswith("load generator saturated") for note in trial["notes"]
    ):
        return None  # not saturated, or capped on purpose by LOADGEN_CPUS
    others = sum(
        c["cpu_cores"] for c in trial["components"].values() if c["kind"] in ("proxy", "store")
    )
    generating = max(1, workers)
    committed = trial["replicas"] * s.replica_cpus + others + generating
    if s.host_cpus - committed < 1.0:
        return None
    # --processes k forks k workers under a master; one process becomes two generators.
    return max(2, workers + 1)


def manifest(s: Settings, rd: RunDir, runtime: Runtime, started: str) -> dict:
    info = runtime.info()
    binaries = {k: info.details[k] for k in ("nginx", "redis_server") if k in info.details}
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
        "started_at": started,
    }


def stored_histogram(raw: Path) -> str | None:
    """The latency histogram a finished trial left in its tally.json."""
    return json.loads((raw / "tally.json").read_text()).get("histogram")


def analysis_of(summary: dict) -> dict | None:
    """The scaling fit and verdict over the trials so far; None below two distinct N."""
    from analysis.analyze import analyze, fit_input, fitted_params

    if summary["load"]["model"] == "rate":
        raise ValueError(
            "open loop (LOAD=rate): throughput is the offered rate at every N, so no scaling "
            "model is fitted; read latency vs N, and achieved vs offered rate, instead"
        )
    if len({t["replicas"] for t in summary["trials"]}) < 2:
        return None
    measurements, fit_on = fit_input(summary)
    return analyze(measurements, summary["points"], fit_on, fitted_params(summary))


def wanted_trials(points: Sequence[dict], s: Settings, analysis: dict | None) -> list[int]:
    """The N that need another trial: those whose CI is too wide (needs_more_trials), or,
    once every CI is narrow enough, those whose E(N) interval still straddles the
    verdict's threshold, with the baseline that every E(N) divides by."""
    wanted = needs_more_trials(points, s.ci_target, s.max_trials)
    if wanted or not s.ci_target or not analysis or not points:
        return wanted
    count = {p["replicas"]: p["trials"] for p in points}
    base = min(count)
    open_ = [n for n in undecided(analysis) if n in count]
    return [n for n in sorted({base, *open_}) if open_ and count[n] < s.max_trials]


def extra_trials(
    points: Sequence[dict],
    s: Settings,
    running: int | None,
    room: int | None,
    analysis: dict | None = None,
) -> list[int]:
    """The wanted N (wanted_trials), widest CI first, ties to the baseline (it is in every
    efficiency) then the largest N; at most `room` of them (what the time budget allows,
    None: no limit), in an order that goes on from the N now running, as trial_order
    does."""
    wide = {p["replicas"]: p.get("throughput_ci_half") or 1.0 for p in points}
    extra = wanted_trials(points, s, analysis)
    base = min(wide, default=None)
    extra.sort(key=lambda n: (-wide[n], n != base, -n))
    extra = extra[:room] if room is not None else extra
    return sorted(extra, reverse=running == max(extra, default=0))


def precision_status(
    points: Sequence[dict], s: Settings, elapsed: float, stopped_by: str | None
) -> dict:
    """What precision the sweep reached, and why it stopped adding trials."""
    halves = {str(p["replicas"]): p.get("throughput_ci_half") for p in points}
    reached = bool(points) and all(h is not None and h <= s.ci_target for h in halves.values())
    return {
        "ci_target": s.ci_target,
        "ci_half_widths": halves,
        "reached": reached if s.ci_target else None,
        "stopped_by": "target reached" if reached and s.ci_target else stopped_by,
        "elapsed_s": round(elapsed, 1),
        "time_budget_s": s.time_budget or None,
    }


def run_sweep(
    s: Settings,
    rd: RunDir,
    runtime: Runtime,
    progress: Callable[[str, float], None] = lambda text, done: None,
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
    prior = prior or {}
    started = prior.get("started_at") or now_iso()
    summary: dict = {
        "schema_version": SCHEMA_VERSION,
        "run_id": rd.run_id,
        "status": "running",
        "started_at": started,
        "ended_at": None,
        "error": None,
        "scenario": s.scenario,
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
        "trials": [],
        "points": [],
        "precision": None,
        "precision_status": None,
        "warmup_trial": prior.get("warmup_trial"),
        "analysis": None,
        "analysis_error": None,
        "consistency": None,
        "leftover_processes": [],
    }
    trials: list[dict] = list(prior.get("trials") or [])
    histograms = {(t["replicas"], t["trial"]): stored_histogram(rd.path / t["raw"]) for t in trials}
    first = 1 + max((t["trial"] for t in trials), default=0)
    summary["trials"] = trials
    summary["points"] = prior.get("points") or []
    summary["analysis"] = prior.get("analysis")
    summary["consistency"] = prior.get("consistency")
    summary["precision"] = prior.get("precision")
    logs = rd.path / "runtime" / "logs"
    ballast = Ballast(rd.run_id, s.replica_cpus, logs, s.cpu_period_us)
    probe = Probe(rd.run_id, logs)
    loadgen_group: CpuGroup | None = None
    mf: dict = {}
    per_trial = s.warmup + s.duration + OVERHEAD_S
    queue = trial_order(s.sweep, s.trials, first)
    done_here = 0
    workers = s.loadgen_workers
    clock: float | None = None  # when the stack first answered: TIME_BUDGET counts from it
    stopped_by: str | None = None
    warm_s = 0.0  # the warm-up trial's wall time, not a measured trial's cost
    old = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        mf = manifest(s, rd, runtime, started)
        summary["server"] = mf["runtime"].get("gunicorn")
        summary["cpu_limits"] = mf["runtime"]["cpu_limits"]
        rd.write_manifest(mf)
        rd.write_summary(summary)
        if not prior:
            rd.point_to_latest()
        limits = mf["runtime"]["cpu_limits"]
        if s.ballast and not ballast.usable:
            log(f"[warning] no ballast: it needs a cgroup CPU quota ({ballast.reason})")
        if not probe.usable:
            log(f"[warning] no host speed probe: it needs a cgroup CPU quota ({probe.reason})")
        if limits == "none":
            log(
                f"[warning] no per-replica CPU limits: {mf['runtime']['cpu_limits_reason']}; "
                "every point will be marked oversubscribed"
            )
        probe.start()
        running: int | None = None
        attempt = 0

        def load(n: int, seconds: float, warmup: float, out: Path, tick) -> tuple:
            """One Locust run at N; returns its LoadRun, plan and the host speed."""
            nonlocal loadgen_group
            readings: list = []

            def counters() -> dict:
                reading = probe.reading()
                readings.append(reading)
                return {
                    **runtime.counters(),
                    **host_counters(ballast, reading[1] if reading else 0),
                }

            plan = loadgen.LocustPlan(
                s.scenario, runtime.endpoint, s.users_at(n), seconds, workers,
                load=s.load, rate=s.rate,
            )  # fmt: skip
            if s.loadgen_cpus and loadgen_group is None:
                loadgen_group = CpuGroup(
                    cgroups.detect()[0], f"hscale-{rd.run_id}/loadgen", s.loadgen_cpus
                )
            run = loadgen.run_point(
                plan, warmup, out, rd.run_id, counters, tick, runtime.loadgen_launcher(),
                loadgen_group,
            )  # fmt: skip
            return run, plan, speed(readings[0], readings[-1]) if len(readings) >= 2 else None

        while queue:
            n, k = queue[0]
            base = done_here * per_trial
            label = f"N={n} trial {k}"
            progress(f"{label}: starting {n} replica(s)", base)
            if running is None:
                runtime.start(n)
                # Now the runtime knows how it ran (e.g. which image path it took).
                mf = manifest(s, rd, runtime, started)
                rd.write_manifest(mf)
            elif n != running:
                runtime.resize(n)
            running = n
            if clock is None:
                clock = time.monotonic()
            if s.ballast:
                ballast.resize(max(s.sweep) - n)
            progress(f"{label}: verifying endpoints through nginx", base + 2)
            verify(runtime.endpoint, runtime.replicas(), shared=s.store != "memory")
            if s.warmup_trial and not prior and summary["warmup_trial"] is None:
                # The first trial of a cold stack and host runs slow: load it, discard it.
                progress(f"N={n}: warm-up trial ({s.warmup_trial:g} s, discarded)", base + 2)
                out = rd.path / "points" / "warmup"
                warm_t0 = time.monotonic()
                run, _, hs = load(n, s.warmup_trial, 0.0, out, lambda phase: None)
                warm_s = time.monotonic() - warm_t0
                seconds = run.tally["duration_s"]
                ok = run.tally["requests"] - run.tally["failures"]
                summary["warmup_trial"] = {
                    "replicas": n,
                    "seconds": round(seconds, 2),
                    "throughput_rps": round(ok / seconds, 2) if seconds > 0 else None,
                    "host_speed": hs,
                    "raw": str(out.relative_to(rd.path)),
                }
            counter_before = read_counters(runtime.endpoint, runtime.replicas())
            users = s.users_at(n)
            out = rd.trial_dir(n, k, attempt)
            t0 = time.monotonic()

            def tick(
                phase: str, label: str = f"{label} ({users} users)", t0: float = t0, base=base
            ) -> None:
                progress(
                    f"{label}: {phase}",
                    base + OVERHEAD_S + min(time.monotonic() - t0, s.warmup + s.duration),
                )

            run, plan, host_speed = load(n, s.warmup + s.duration, s.warmup, out, tick)
            counter_after = read_counters(runtime.endpoint, runtime.replicas())
            trial = make_trial(
                n, k, len(trials), plan, run, runtime, s, limits, out, rd.path, host_speed
            )
            trial["consistency"] = consistency.judge(
                run.tally.get("consistency"), counter_before, counter_after
            )
            more = more_loadgen_workers(trial, s, workers)
            if more is not None:
                # Kept on disk; the trial runs again with more Locust processes.
                log(f"{label}: load generator saturated; again with {more} Locust workers")
                summary.setdefault("retried_trials", []).append(
                    {"replicas": n, "trial": k, "raw": trial["raw"], "notes": trial["notes"]}
                )
                workers, attempt = more, attempt + 1
                continue
            queue.pop(0)
            attempt, done_here = 0, done_here + 1
            trials.append(trial)
            histograms[(n, k)] = run.tally["histogram"]
            elapsed = time.monotonic() - clock
            judge(summary, trials, histograms, s, (elapsed - warm_s) / done_here)
            summary["precision_status"] = precision_status(
                summary["points"], s, elapsed, stopped_by
            )
            rd.write_summary(summary)
            if not queue:
                room = None
                if s.time_budget:
                    # The trials so far say what one costs here, resizes included.
                    cost = (elapsed - warm_s) / done_here
                    room = max(0, int((s.time_budget - elapsed) // cost))
                found = summary["analysis"]
                queue = [
                    (m, 1 + max(t["trial"] for t in trials if t["replicas"] == m))
                    for m in extra_trials(summary["points"], s, running, room, found)
                ]
                if not queue and wanted_trials(summary["points"], s, found):
                    stopped_by = "time budget" if room == 0 else "max trials"
        summary["status"] = "complete"
    except (KeyboardInterrupt, Interrupted) as exc:
        summary["status"] = "interrupted"
        cause = str(exc) or "SIGINT"
        summary["error"] = f"interrupted ({cause}) after {done_here} finished trial(s)"
    except Exception as exc:  # noqa: BLE001  (recorded, then re-raised by the caller's exit code)
        summary["status"] = "failed"
        summary["error"] = f"{type(exc).__name__}: {exc}"
        (rd.path / "error.txt").write_text(traceback.format_exc())
    finally:
        # Teardown is not interruptible: a second Ctrl-C or SIGTERM must not leave
        # processes behind.
        held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        prev = {sig: signal.signal(sig, signal.SIG_IGN) for sig in held}
        try:
            progress("tearing down", done_here * per_trial)
            ballast.stop()
            probe.stop()
            if loadgen_group is not None:
                loadgen_group.remove()
            runtime.stop()
            summary["leftover_processes"] = procs.kill_leftovers(rd.run_id)
            summary["ended_at"] = now_iso()
            if summary["precision_status"]:  # as the last trial left it, and why it stopped
                summary["precision_status"] = precision_status(
                    summary["points"], s, summary["precision_status"]["elapsed_s"], stopped_by
                )
            rd.write_summary(summary)
            if mf:
                rd.write_manifest(
                    {**mf, "ended_at": summary["ended_at"], "status": summary["status"]}
                )
        finally:
            signal.signal(signal.SIGINT, prev[signal.SIGINT])
            for sig, handler in old.items():
                signal.signal(sig, handler)
    return summary


def judge(summary: dict, trials: list[dict], histograms: dict, s: Settings, trial_s: float) -> None:
    """Everything summary.json derives from the trials so far: the speed adjustment,
    consistency, points, the scaling analysis and, where it cannot decide, what would
    (trial_s: the wall time one trial takes here)."""
    cv = precision.control_variate(trials, s.speed_adjust and s.load == "closed")
    for t, x in zip(trials, cv.pop("adjusted"), strict=True):
        t["throughput_adj_rps"] = x if cv["used"] else None
    summary["precision"] = cv
    summary["consistency"] = consistency.summarize([t["consistency"] for t in trials])
    summary["points"] = aggregate.points(
        trials, histograms, s.load == "closed", fitted=1 if cv["used"] else 0
    )
    try:
        summary["analysis"], summary["analysis_error"] = analysis_of(summary), None
    except ValueError as exc:  # a fit that cannot be made is reported, not fatal
        summary["analysis"], summary["analysis_error"] = None, str(exc)
    found = summary["analysis"]
    if found:
        per_n = {p["replicas"]: p["trials"] for p in summary["points"]}
        found["advice"] = advice(found, per_n, s.sweep, trial_s, bench_command(s))
        if found["advice"]:
            found["verdict"] += " " + found["advice"]
