"""The sweep: for each N, resize, verify, warm up, measure; results after every point."""

from __future__ import annotations

import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import psutil

from analysis import components, latency, scaling, validity
from hscale import loadgen, procs, sysinfo
from hscale.ballast import Ballast
from hscale.cgroups import CpuCounters
from hscale.results import RunDir, now_iso
from hscale.runtimes.base import Runtime
from hscale.settings import RESERVED_CPUS, Settings
from hscale.verify import verify

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


def host_counters(ballast: Ballast) -> dict[str, CpuCounters]:
    """Whole-host busy CPU, and the ballast's share of it (to be subtracted)."""
    t = psutil.cpu_times()
    # guest time is already inside user; steal is time the hypervisor kept from us.
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return {
        "host": CpuCounters(cpu_s=busy),
        "ballast": CpuCounters(cpu_s=ballast.cpu_seconds()),
    }


def make_point(
    n: int,
    users: int,
    run: loadgen.LoadRun,
    runtime: Runtime,
    s: Settings,
    limits: str,
    out: Path,
    run_root: Path,
) -> dict:
    """One summary point from the raw tally and CPU counters."""
    tally = run.tally
    seconds = tally["duration_s"]
    comps = runtime.components()
    # One core per Locust process that generates load (the master of workers only merges).
    loadgen_budget = float(max(1, s.loadgen_workers))
    budgets = {c.name: c.budget_cpus for c in comps} | {"loadgen": loadgen_budget}
    kinds = {c.name: c.kind for c in comps} | {"loadgen": "loadgen"}
    cpu = components.cpu_usage(run.counters_start, run.counters_end, seconds, budgets, kinds)
    host, ballast = cpu.pop("host", None), cpu.pop("ballast", None)
    busy = host["cpu_cores"] - (ballast["cpu_cores"] if ballast else 0.0) if host else None
    requests, failures = tally["requests"], tally["failures"]
    over = oversubscription(s, n, limits)
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
    )
    return {
        "replicas": n,
        "users": users,
        "duration_s": round(seconds, 3),
        "throughput_rps": round((requests - failures) / seconds, 2) if seconds > 0 else 0.0,
        "requests": requests,
        "failures": failures,
        "failure_rate": round(failures / requests, 5) if requests else None,
        "latency_ms": latency.percentiles_ms(tally["histogram"]),
        "per_replica_requests": dict(sorted(tally["per_replica_requests"].items())),
        "components": cpu,
        "host": {"cpus": s.host_cpus, "busy_cores": None if busy is None else round(busy, 3)},
        "loadgen_cpu_warnings": tally["cpu_warnings"],
        "loadgen_workers": tally.get("workers", 0),
        "oversubscribed": over is not None,
        "valid": not notes,
        "notes": notes,
        "errors": tally["errors"],
        "raw": str(out.relative_to(run_root)),
    }


def with_scaling(points: list[dict]) -> list[dict]:
    """Points with speedup and efficiency filled in (recomputed as points arrive)."""
    rows = []
    for p, (speedup, eff) in zip(points, scaling.speedup_efficiency(points), strict=True):
        notes = [n for n in p["notes"] if not n.startswith("efficiency")]
        notes += scaling.efficiency_notes(eff)
        rows.append(
            {
                **p,
                "speedup": None if speedup is None else round(speedup, 3),
                "efficiency": None if eff is None else round(eff, 3),
                "notes": notes,
            }
        )
    return rows


def manifest(s: Settings, rd: RunDir, runtime: Runtime, started: str) -> dict:
    info = runtime.info()
    binaries = {k: info.details[k] for k in ("nginx", "redis_server") if k in info.details}
    return {
        "schema_version": 1,
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


def run_sweep(
    s: Settings,
    rd: RunDir,
    runtime: Runtime,
    progress: Callable[[str, float], None] = lambda text, done: None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run every N; returns the final summary. Always tears the runtime down.

    The caller has run runtime.preflight(), so usage errors came before anything started.
    """
    started = now_iso()
    summary: dict = {
        "run_id": rd.run_id,
        "status": "running",
        "started_at": started,
        "ended_at": None,
        "error": None,
        "scenario": s.scenario,
        "runtime": runtime.name,
        "points": [],
        "leftover_processes": [],
    }
    old = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    points: list[dict] = []
    ballast = Ballast(rd.run_id, s.replica_cpus, rd.path / "runtime" / "logs")
    mf: dict = {}
    per_point = s.warmup + s.duration + OVERHEAD_S
    try:
        mf = manifest(s, rd, runtime, started)
        summary["server"] = mf["runtime"].get("gunicorn")
        summary["cpu_limits"] = mf["runtime"]["cpu_limits"]
        rd.write_manifest(mf)
        rd.write_summary(summary)
        rd.point_to_latest()
        limits = mf["runtime"]["cpu_limits"]
        if s.ballast and not ballast.usable:
            log(f"[warning] no ballast: it needs a cgroup CPU quota ({ballast.reason})")
        if limits == "none":
            log(
                f"[warning] no per-replica CPU limits: {mf['runtime']['cpu_limits_reason']}; "
                "every point will be marked oversubscribed"
            )
        for i, n in enumerate(s.sweep):
            base = i * per_point
            progress(f"N={n}: starting {n} replica(s)", base)
            if i:
                runtime.resize(n)
            else:
                runtime.start(n)
                # Now the runtime knows how it ran (e.g. which image path it took).
                mf = manifest(s, rd, runtime, started)
                rd.write_manifest(mf)
            if s.ballast:
                ballast.resize(max(s.sweep) - n)
            progress(f"N={n}: verifying endpoints through nginx", base + 2)
            verify(runtime.endpoint, runtime.replicas())
            users, out = s.users_at(n), rd.point_dir(n)
            t0 = time.monotonic()

            def tick(phase: str, n: int = n, base: float = base, t0: float = t0) -> None:
                progress(
                    f"N={n}: {phase} ({s.users_at(n)} users)",
                    base + OVERHEAD_S + min(time.monotonic() - t0, s.warmup + s.duration),
                )

            def counters() -> dict:
                return {**runtime.counters(), **host_counters(ballast)}

            plan = loadgen.LocustPlan(
                s.scenario, runtime.endpoint, users, s.warmup + s.duration, s.loadgen_workers
            )
            run = loadgen.run_point(
                plan, s.warmup, out, rd.run_id, counters, tick, runtime.loadgen_launcher()
            )
            points.append(make_point(n, users, run, runtime, s, limits, out, rd.path))
            summary["points"] = with_scaling(points)
            rd.write_summary(summary)
        summary["status"] = "complete"
    except (KeyboardInterrupt, Interrupted) as exc:
        summary["status"] = "interrupted"
        cause = str(exc) or "SIGINT"
        summary["error"] = f"interrupted ({cause}) after {len(points)} finished point(s)"
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
            progress("tearing down", len(s.sweep) * per_point)
            ballast.stop()
            runtime.stop()
            summary["leftover_processes"] = procs.kill_leftovers(rd.run_id)
            summary["ended_at"] = now_iso()
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
