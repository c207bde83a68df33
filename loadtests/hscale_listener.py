"""Locust event hooks shared by every scenario: the numbers hscale reads.

Imported by each locustfile. It keeps a tally of the measurement window only:
warm-up requests are discarded by resetting Locust's own stats and this tally
after HSCALE_WARMUP seconds, so Locust's CSV/JSON and hscale agree.

It records every response time into an HdrHistogram (exact percentiles; Locust's
own buckets keep ~2 significant digits), counts the X-Replica header of every
response (proof that each replica got traffic), keeps a per-second series and
catches Locust's cpu_warning (the load generator itself is saturated).

Run distributed (a master and workers), each worker ships what it recorded since its
last report with Locust's own reports, and the master adds them up: counts are summed
and histograms added, so the merged figures are exact, not averaged. The master tells
the workers when the warm-up ends. Results go to the JSON file named by
HSCALE_TALLY_FILE when the test stops (on the master, or the only process).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import Counter

import gevent
from hdrh.histogram import HdrHistogram
from locust import events
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

# 1 microsecond to 60 s at 3 significant digits: exact enough for p99.9 and max.
LOWEST_US, HIGHEST_US, SIG_DIGITS = 1, 60_000_000, 3
PHASE_MESSAGE = "hscale_phase"


def _histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIG_DIGITS)


class Tally:
    def __init__(self) -> None:
        self.test_start = time.time()
        self.per_second: Counter[tuple[int, str]] = Counter()  # (epoch second, kind)
        self.reset(phase="warmup")

    def reset(self, phase: str) -> None:
        self.phase = phase
        self.window_start = time.time()
        self.window_end: float | None = None
        self.requests = 0
        self.failures = 0
        self.replicas: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.cpu_warnings: list[float] = []
        self.hist = _histogram()
        self.workers = 0

    def record(self, response_time_ms: float, replica: str | None, error: str | None) -> None:
        self.requests += 1
        second = int(time.time())
        self.per_second[(second, "requests")] += 1
        if error is not None:
            self.failures += 1
            self.errors[error[:200]] += 1
            self.per_second[(second, "failures")] += 1
        if replica:
            self.replicas[replica] += 1
        self.hist.record_value(max(LOWEST_US, min(HIGHEST_US, int(response_time_ms * 1000))))

    # -- distributed: a worker's report and the master's merge ---------------------
    def take_report(self) -> dict:
        """What this worker recorded since its last report; its counters start again."""
        report = {
            "phase": self.phase,
            "requests": self.requests,
            "failures": self.failures,
            "replicas": dict(self.replicas),
            "errors": dict(self.errors),
            "cpu_warnings": self.cpu_warnings,
            "histogram": _encode(self.hist) if self.requests else None,
            "per_second": [[s, k, n] for (s, k), n in self.per_second.items()],
        }
        phase = self.phase
        self.per_second.clear()
        self.reset(phase)
        return report

    def merge(self, report: dict) -> None:
        for second, kind, count in report["per_second"]:
            self.per_second[(second, kind)] += count  # warm-up seconds too, for the series
        if report["phase"] != self.phase:
            return  # recorded before this worker heard that the warm-up ended
        self.requests += report["requests"]
        self.failures += report["failures"]
        self.replicas.update(report["replicas"])
        self.errors.update(report["errors"])
        self.cpu_warnings += report["cpu_warnings"]
        if report["histogram"]:
            self.hist.add(HdrHistogram.decode(base64.b64decode(report["histogram"])))

    def dump(self) -> dict:
        end = self.window_end or time.time()
        first = int(self.test_start)
        last = max([first, *(s for s, _ in self.per_second)])
        series = [
            {
                "t": s - first,
                "requests": self.per_second[(s, "requests")],
                "failures": self.per_second[(s, "failures")],
            }
            for s in range(first, last + 1)
        ]
        return {
            "phase": self.phase,
            "window_start": self.window_start,
            "window_end": end,
            "duration_s": end - self.window_start,
            "warmup_s": self.window_start - self.test_start,
            "requests": self.requests,
            "failures": self.failures,
            "per_replica_requests": dict(self.replicas),
            "errors": dict(self.errors),
            "cpu_warnings": self.cpu_warnings,
            "histogram": _encode(self.hist) if self.requests else None,
            "series": series,
            "workers": self.workers,
        }


def _encode(hist: HdrHistogram) -> str:
    return base64.b64encode(hist.encode()).decode()


tally = Tally()


def _write(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh)
    os.replace(tmp, path)


def _mark(phase: str) -> None:
    """Tell the harness which phase the load is in, so it samples CPU counters in step."""
    path = os.environ.get("HSCALE_PHASE_FILE")
    if path:
        _write(path, {"phase": phase, "time": time.time()})


@events.init.add_listener
def on_init(environment, **_kw) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):

        def on_phase(msg, **_kw) -> None:
            # Warm-up ends here too: Locust's stats since the last report and this tally.
            runner.stats.reset_all()
            tally.reset(phase=msg.data)

        runner.register_message(PHASE_MESSAGE, on_phase)
    elif isinstance(runner, MasterRunner):
        environment.events.worker_report.add_listener(on_worker_report)


@events.request.add_listener
def on_request(response_time, response=None, exception=None, **_kw) -> None:
    headers = getattr(response, "headers", None)
    replica = headers.get("X-Replica") if headers else None
    tally.record(response_time, replica, None if exception is None else repr(exception))


@events.cpu_warning.add_listener
def on_cpu_warning(cpu_usage: float, **_kw) -> None:
    if tally.phase == "measure":
        tally.cpu_warnings.append(round(cpu_usage, 1))


@events.report_to_master.add_listener
def on_report_to_master(data: dict, **_kw) -> None:
    data["hscale"] = tally.take_report()


def on_worker_report(data: dict, **_kw) -> None:
    if "hscale" in data:
        tally.merge(data["hscale"])


@events.test_start.add_listener
def on_test_start(environment, **_kw) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # the master decides when the warm-up ends
    warmup = float(os.environ.get("HSCALE_WARMUP", "0"))
    tally.test_start = time.time()

    def start_measuring() -> None:
        gevent.sleep(warmup)
        runner = environment.runner
        if runner is not None:
            runner.stats.reset_all()
        tally.reset(phase="measure")
        if isinstance(runner, MasterRunner):
            tally.workers = runner.worker_count
            runner.send_message(PHASE_MESSAGE, "measure")
        _mark("measure")

    gevent.spawn(start_measuring)


@events.test_stop.add_listener
def on_test_stop(environment, **_kw) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    tally.window_end = time.time()
    _mark("done")
    if isinstance(environment.runner, MasterRunner):
        return  # workers' last reports arrive after this: written at quitting
    # Locust writes its CSV once per interval and not at exit: wait one more tick so
    # locust_stats.csv covers the whole window too (users are already stopped).
    gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)
    _write_tally()


@events.quitting.add_listener
def on_quitting(environment, **_kw) -> None:
    if isinstance(environment.runner, MasterRunner):
        _write_tally()


def _write_tally() -> None:
    path = os.environ.get("HSCALE_TALLY_FILE")
    if path and tally.window_end is not None:
        _write(path, tally.dump())
