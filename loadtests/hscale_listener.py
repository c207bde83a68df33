"""Locust event hooks shared by every scenario: the numbers hscale reads.

Imported by each locustfile. It keeps a tally of the measurement window only:
warm-up requests are discarded by resetting Locust's own stats and this tally
after HSCALE_WARMUP seconds, so Locust's CSV/JSON and hscale agree.

It records every response time into an HdrHistogram (exact percentiles; Locust's
own buckets keep ~2 significant digits), counts the X-Replica header of every
response (proof that each replica got traffic), keeps a per-second series and
catches Locust's cpu_warning (the load generator itself is saturated).
Results go to the JSON file named by HSCALE_TALLY_FILE when the test stops.
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
from locust.stats import CSV_STATS_INTERVAL_SEC

# 1 microsecond to 60 s at 3 significant digits: exact enough for p99.9 and max.
LOWEST_US, HIGHEST_US, SIG_DIGITS = 1, 60_000_000, 3


class Tally:
    def __init__(self) -> None:
        self.reset(phase="warmup")
        self.test_start = time.time()
        self.series: list[dict] = []  # per-second rows over the whole run, warm-up included

    def reset(self, phase: str) -> None:
        self.phase = phase
        self.window_start = time.time()
        self.window_end: float | None = None
        self.requests = 0
        self.failures = 0
        self.replicas: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.cpu_warnings: list[float] = []
        self.hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIG_DIGITS)

    def record(self, response_time_ms: float, replica: str | None, error: str | None) -> None:
        self.requests += 1
        if error is not None:
            self.failures += 1
            self.errors[error[:200]] += 1
        if replica:
            self.replicas[replica] += 1
        self.hist.record_value(max(LOWEST_US, min(HIGHEST_US, int(response_time_ms * 1000))))
        second = int(time.time() - self.test_start)
        while len(self.series) <= second:
            self.series.append({"t": len(self.series), "requests": 0, "failures": 0})
        self.series[second]["requests"] += 1
        self.series[second]["failures"] += error is not None

    def dump(self) -> dict:
        end = self.window_end or time.time()
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
            "histogram": base64.b64encode(self.hist.encode()).decode() if self.requests else None,
            "series": self.series,
        }


tally = Tally()


def _write(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh)
    os.replace(tmp, path)


@events.request.add_listener
def on_request(response_time, response=None, exception=None, **_kw) -> None:
    headers = getattr(response, "headers", None)
    replica = headers.get("X-Replica") if headers else None
    tally.record(response_time, replica, None if exception is None else repr(exception))


@events.cpu_warning.add_listener
def on_cpu_warning(cpu_usage: float, **_kw) -> None:
    if tally.phase == "measure":
        tally.cpu_warnings.append(round(cpu_usage, 1))


@events.test_start.add_listener
def on_test_start(environment, **_kw) -> None:
    warmup = float(os.environ.get("HSCALE_WARMUP", "0"))
    tally.test_start = time.time()

    def start_measuring() -> None:
        gevent.sleep(warmup)
        if environment.runner is not None:
            environment.runner.stats.reset_all()
        tally.reset(phase="measure")
        _mark("measure")

    gevent.spawn(start_measuring)


@events.test_stop.add_listener
def on_test_stop(**_kw) -> None:
    tally.window_end = time.time()
    path = os.environ.get("HSCALE_TALLY_FILE")
    if path:
        _write(path, tally.dump())
    _mark("done")
    # Locust writes its CSV once per interval and not at exit: wait one more tick so
    # locust_stats.csv covers the whole window too (users are already stopped).
    gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)


def _mark(phase: str) -> None:
    """Tell the harness which phase the load is in, so it samples CPU counters in step."""
    path = os.environ.get("HSCALE_PHASE_FILE")
    if path:
        _write(path, {"phase": phase, "time": time.time()})
