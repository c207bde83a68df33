"""`hscale faults` (`make faults`): the stack at FAULT_N replicas, then one trial per fault
with the fault struck FAULT_AT seconds into the measured window, the stack healed between
them. Writes faults.json, faults.md, faults.html and figures/fault-<name>.png beside the
usual summary.json and manifest.json of the run."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from hscale.analysis import consistency, figures, plot, report
from hscale.analysis import faults as judge
from hscale.results import RunDir, write_json
from hscale.runtimes.base import Runtime
from hscale.settings import Settings
from hscale.sweep import Interrupted, Progress, Sweep, interruptible, uninterruptible
from hscale.trial import Stage, make_trial
from hscale.verify import read_counters


class Striker:
    """Strikes the fault `at` seconds after the load's measured window opens, on its own
    thread (a store restart takes a while; the load must not wait for it)."""

    def __init__(self, runtime: Runtime, fault: str, at: float, pause: float) -> None:
        self.runtime, self.fault, self.at, self.pause = runtime, fault, at, pause
        self.opened: float | None = None
        self.struck_at: float | None = None  # wall clock
        self.done: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def tick(self, phase: str) -> None:
        if phase == "measure" and self.opened is None:
            self.opened = time.time()
        if self.opened and self.thread is None and time.time() >= self.opened + self.at:
            self.struck_at = time.time()
            self.thread = threading.Thread(target=self._strike, daemon=True)
            self.thread.start()

    def _strike(self) -> None:
        try:
            self.done = self.runtime.inject(self.fault, self.pause)
        except BaseException as exc:  # noqa: BLE001  (raised in the sweep's thread)
            self.error = exc

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join(timeout=120)
        if self.error is not None:
            raise self.error


def fault_trial(sweep: Sweep, n: int, k: int, fault: str) -> dict[str, Any]:
    s, runtime = sweep.s, sweep.runtime
    at = s.fault_at if s.fault_at is not None else s.duration / 3
    checked = runtime.target.reference  # the counter tells lost writes
    before = read_counters(runtime.endpoint, runtime.upstreams()) if checked else None
    out = sweep.rd.path / "faults" / fault
    striker = Striker(runtime, fault, at, s.fault_pause)

    t0, base = time.monotonic(), (k - 1) * (s.warmup + s.duration + 10)

    def tick(phase: str) -> None:
        striker.tick(phase)
        sweep.progress(f"{fault} at N={n}: {phase}", base + time.monotonic() - t0)

    run, plan, host_speed = sweep.load(n, s.warmup + s.duration, s.warmup, out, tick)
    striker.join()
    if striker.struck_at is None:
        raise RuntimeError(f"{fault}: the window closed before FAULT_AT={at:g} s")
    trial = make_trial(
        Stage(s, runtime, sweep.limits, sweep.rd.path), n, k, k - 1, plan, run, out, host_speed
    )
    heal_error = None
    try:  # everything back before the counter is read and the next trial
        runtime.heal()
        sweep.place(n, f"{fault}: healed")
    except Exception as exc:  # noqa: BLE001  (the trial is kept; run_faults stops)
        heal_error = f"{type(exc).__name__}: {exc}"
    after = (
        read_counters(runtime.endpoint, runtime.upstreams()) if checked and not heal_error else None
    )
    tally = run.tally
    test_start = tally["window_start"] - tally["warmup_s"]
    found = judge.effect(
        tally["series"], tally["warmup_s"], striker.struck_at - int(test_start),
        s.fault_pause if fault == "pause-replica" else None,
        (n - 1) / n if fault == "kill-replica" else 1.0,
    )  # fmt: skip
    counter = (
        consistency.judge(tally.get("consistency"), before, after).get("counter")
        if checked
        else None
    )
    lost = judge.lost_writes(counter) if fault == "restart-store" else None
    return {
        "fault": fault,
        "replicas": n,
        "at_s": at,
        "done": striker.done,
        "effect": found,
        "lost_writes": lost,
        "durability": judge.DURABILITY.get(s.store) if fault == "restart-store" else None,
        "errors": tally["errors"],
        "verdict": judge.verdict(fault, {**striker.done, "lost_writes": lost}, found),
        "heal_error": heal_error,
        "trial": {k: trial[k] for k in ("throughput_rps", "requests", "failures", "latency_ms",
                                        "per_replica_requests", "raw")},
    }  # fmt: skip


def run_faults(
    s: Settings, rd: RunDir, runtime: Runtime, progress: Progress, log: Any
) -> dict[str, Any]:
    """Every fault once at FAULT_N; returns faults.json's content. Always tears down."""
    n = s.fault_n or max(s.sweep)
    sweep = Sweep(s, rd, runtime, progress, log, {})
    sweep.queue = []  # no measured sweep: fault trials only
    found: list[dict[str, Any]] = []
    with interruptible():
        try:
            sweep.begin()
            sweep.place(n, f"N={n}")
            sweep.warm_up(n)
            for k, fault in enumerate(s.faults, start=1):
                log(f"fault {k}/{len(s.faults)}: {fault} at N={n}")
                found.append(fault_trial(sweep, n, k, fault))
                write(rd.path, s, found)  # kept as each finishes
                if found[-1]["heal_error"]:
                    raise RuntimeError(f"after {fault}, the stack did not heal: "
                                       f"{found[-1]['heal_error']}")  # fmt: skip
            sweep.summary["status"] = "complete"
        except (KeyboardInterrupt, Interrupted, Exception) as exc:
            sweep.stop(exc)
        finally:
            with uninterruptible():
                sweep.teardown()
    return write(rd.path, s, found, sweep.summary["status"], sweep.summary.get("error"))


def write(
    run: Path, s: Settings, found: list[dict[str, Any]], status: str = "running",
    error: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    doc = {
        "schema_version": 1, "status": status, "error": error, "store": s.store,
        "faults": found,
    }  # fmt: skip
    write_json(run / "faults.json", doc)
    pngs = plot.save_figures(timelines(run, found), run / "figures")
    (run / "faults.md").write_text(judge.markdown(doc, list(pngs)), encoding="utf-8")
    (run / "faults.html").write_text(judge.html(doc, pngs, report.data_uri), encoding="utf-8")
    return doc


def timelines(run: Path, found: list[dict[str, Any]]) -> dict[str, Any]:
    figs = {}
    for f in found:
        tally = json.loads((run / f["trial"]["raw"] / "tally.json").read_text())
        e = f["effect"]
        if "fault_t" in e and not e.get("error"):
            figs[f"fault-{f['fault']}"] = figures.fault_timeline(
                tally["series"], tally["warmup_s"], e["fault_t"], f["fault"],
                e.get("paused_s"), e.get("recovery_s"),
            )  # fmt: skip
    return figs
