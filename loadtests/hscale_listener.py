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

Open loop (HSCALE_LOAD=rate): every scenario's wait_time is `pacing`, which holds each
user to its share of HSCALE_RATE on a fixed schedule of intended send times (wrk2 style:
late sends go at once, none skipped), and the first request of each iteration is timed
from its intended send, so a stall shows in the latency instead of being hidden by
coordinated omission. In closed loop `pacing` waits 0, Locust's default.
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass

import gevent
import gevent.local
from hdrh.histogram import HdrHistogram
from locust import events
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

# 1 microsecond to 60 s at 3 significant digits: exact enough for p99.9 and max.
LOWEST_US, HIGHEST_US, SIG_DIGITS = 1, 60_000_000, 3
PHASE_MESSAGE = "hscale_phase"
# Open loop: a send that starts more than this after its intended time counts as late.
# Well above gevent's scheduling jitter, so late means "its user was still busy" (a slow
# response, a stall, too few users) or the load generator itself was saturated.
LATE_MS = 10.0


@dataclass(frozen=True)
class LoadModel:
    rate: float | None = None  # offered requests/s, all users together; None: closed loop
    users: int = 1  # users across every Locust process: each paces at rate / users

    @property
    def interval(self) -> float:
        """Seconds between one user's intended sends."""
        return self.users / self.rate if self.rate else 0.0


model = LoadModel()  # set at test_start from the --hscale-* options
_user = gevent.local.local()  # per greenlet, i.e. per user: next_send, intended


def pacing(_user_instance: object) -> float:
    """wait_time of every scenario: 0 in closed loop; in open loop the time left until
    this user's next intended send (0 when behind: it catches up without skipping)."""
    if model.rate is None:
        return 0.0
    now = time.time()
    intended = getattr(_user, "next_send", None)
    if intended is None:  # a random phase, so users' schedules interleave
        intended = now + random.random() * model.interval
    _user.next_send = intended + model.interval
    _user.intended = intended  # claimed by the iteration's first request (on_request)
    return max(0.0, intended - now)


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
        self.intended_sends = 0  # open loop: requests timed from an intended send
        self.late_sends = 0
        self.max_send_lag_ms = 0.0

    def record(
        self,
        response_time_ms: float,
        replica: str | None,
        error: str | None,
        send_lag_ms: float | None = None,
    ) -> None:
        """send_lag_ms: how late an open-loop send started; it counts in the latency."""
        if send_lag_ms is not None:
            self.intended_sends += 1
            self.late_sends += send_lag_ms > LATE_MS
            self.max_send_lag_ms = max(self.max_send_lag_ms, send_lag_ms)
            response_time_ms += send_lag_ms
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
            "intended_sends": self.intended_sends,
            "late_sends": self.late_sends,
            "max_send_lag_ms": self.max_send_lag_ms,
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
        self.intended_sends += report["intended_sends"]
        self.late_sends += report["late_sends"]
        self.max_send_lag_ms = max(self.max_send_lag_ms, report["max_send_lag_ms"])
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
            "open_loop": self.open_loop(),
        }

    def open_loop(self) -> dict | None:
        if model.rate is None:
            return None
        return {
            "offered_rps": model.rate,
            "users": model.users,
            "intended_sends": self.intended_sends,
            "late_sends": self.late_sends,
            "late_threshold_ms": LATE_MS,
            "max_send_lag_ms": round(self.max_send_lag_ms, 3),
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


@events.init_command_line_parser.add_listener
def on_parser(parser, **_kw) -> None:
    # Read from HSCALE_* on the master (or the only process). Locust forwards custom
    # options to workers in each spawn message, so worker containers need no HSCALE_*.
    parser.add_argument(
        "--hscale-load",
        env_var="HSCALE_LOAD",
        choices=("closed", "rate"),
        default="closed",
        help="closed: no wait between iterations; rate: open loop at --hscale-rate",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--hscale-rate",
        env_var="HSCALE_RATE",
        type=float,
        help="open loop: requests/s offered by all users together",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--hscale-users",
        env_var="HSCALE_USERS",
        type=int,
        help="users across all processes (default --users), which share the rate",
        include_in_web_ui=False,
    )


def load_model(options) -> LoadModel:
    if options is None or getattr(options, "hscale_load", "closed") == "closed":
        return LoadModel()
    rate, users = options.hscale_rate, options.hscale_users or options.num_users
    if not rate or rate <= 0 or not users or users < 1:
        raise ValueError(f"HSCALE_LOAD=rate needs HSCALE_RATE > 0 and users, got {rate}, {users}")
    return LoadModel(rate, users)


def _check_open_loop(environment) -> None:
    """Fail at start rather than run a silently closed loop; fix the user total that
    Locust then forwards to the workers."""
    opened = load_model(environment.parsed_options)
    if opened.rate is None:
        return
    unpaced = [u.__name__ for u in environment.user_classes if u.wait_time is not pacing]
    if unpaced:
        raise ValueError(f"HSCALE_LOAD=rate needs wait_time = hscale_listener.pacing in {unpaced}")
    environment.parsed_options.hscale_users = opened.users


@events.init.add_listener
def on_init(environment, **_kw) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):

        def on_phase(msg, **_kw) -> None:
            # Warm-up ends here too: Locust's stats since the last report and this tally.
            runner.stats.reset_all()
            tally.reset(phase=msg.data)

        runner.register_message(PHASE_MESSAGE, on_phase)
        return
    _check_open_loop(environment)
    if isinstance(runner, MasterRunner):
        environment.events.worker_report.add_listener(on_worker_report)


@events.request.add_listener
def on_request(response_time, response=None, exception=None, start_time=None, **_kw) -> None:
    headers = getattr(response, "headers", None)
    replica = headers.get("X-Replica") if headers else None
    # Fired in the user's greenlet: its pending intended send, if any, is this request's.
    intended, lag_ms = getattr(_user, "intended", None), None
    if intended is not None and start_time is not None:
        _user.intended = None  # the iteration's later requests are timed from their start
        lag_ms = max(0.0, (start_time - intended) * 1000)
    error = None if exception is None else repr(exception)
    tally.record(response_time, replica, error, lag_ms)


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
    global model
    model = load_model(environment.parsed_options)  # on workers: as the master sent it
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
