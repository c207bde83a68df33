"""hscale's tally of a Locust run, free of Locust: what the listener records and ships.

The listener (hscale_listener.py) is thin Locust hooks around one `Tally`: every response
goes to `record`, workers `take_report` and the master `merge`s them, and `dump` is
tally.json. Nothing here imports Locust or patches anything, so tests import it as is.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

# 1 microsecond to 60 s at 3 significant digits: exact enough for p99.9 and max.
LOWEST_US, HIGHEST_US, SIG_DIGITS = 1, 60_000_000, 3
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


def _histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIG_DIGITS)


class Consistency:
    """What users saw acknowledged and read back, over the whole run: never reset at the
    warm-up boundary, and a worker's report is merged whatever its phase."""

    FIELDS = {
        # attempts: counted when sent (a request still in flight when Locust stops its
        # users is never answered, yet may have counted); failed: an error status or no
        # response, so it may or may not have counted.
        "counter": ("attempts", "acknowledged", "failed"),
        # writes: acknowledged. reads: of the user's own last acknowledged write, answered
        # 200 or 404; missing: 404; stale: an older value; failed: no usable answer.
        "kv": ("writes", "reads", "missing", "stale", "failed"),
        "session": ("writes", "reads", "missing", "stale", "failed"),
    }

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {kind: Counter() for kind in self.FIELDS}

    def add(self, kind: str, field: str) -> None:
        self.counts[kind][field] += 1

    def take(self) -> dict[str, dict[str, int]]:
        report = {kind: dict(counts) for kind, counts in self.counts.items()}
        for counts in self.counts.values():
            counts.clear()
        return report

    def merge(self, report: dict[str, dict[str, int]]) -> None:
        for kind, counts in report.items():
            self.counts[kind].update(counts)

    def dump(self) -> dict[str, dict[str, int]]:
        out = {k: {f: self.counts[k][f] for f in fs} for k, fs in self.FIELDS.items()}
        counter = out["counter"]
        # Sent but never answered: in flight when the users were stopped.
        counter["abandoned"] = counter["attempts"] - counter["acknowledged"] - counter["failed"]
        return out


class Tally:
    def __init__(self) -> None:
        self.model = LoadModel()  # set at test_start from the --hscale-* options
        self.test_start = time.time()
        self.consistency = Consistency()  # whole run: not part of reset()
        self.per_second: Counter[tuple[int, str]] = Counter()  # (epoch second, kind)
        self.max_ms: dict[int, float] = {}  # epoch second -> its slowest response
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
        self.per_second[(second, "latency_ms")] += response_time_ms  # a mean per second
        self.max_ms[second] = max(self.max_ms.get(second, 0.0), response_time_ms)
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
            "max_ms": [[s, ms] for s, ms in self.max_ms.items()],
            "intended_sends": self.intended_sends,
            "late_sends": self.late_sends,
            "max_send_lag_ms": self.max_send_lag_ms,
            "consistency": self.consistency.take(),
        }
        phase = self.phase
        self.per_second.clear()
        self.max_ms.clear()
        self.reset(phase)
        return report

    def merge(self, report: dict) -> None:
        for second, kind, count in report["per_second"]:
            self.per_second[(second, kind)] += count  # warm-up seconds too, for the series
        for second, ms in report.get("max_ms", []):
            self.max_ms[second] = max(self.max_ms.get(second, 0.0), ms)
        self.consistency.merge(report["consistency"])  # whole run, whatever the phase
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
                "mean_ms": _mean_ms(self.per_second, s),
                "max_ms": round(self.max_ms[s], 3) if s in self.max_ms else None,
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
            "consistency": self.consistency.dump(),
        }

    def open_loop(self) -> dict | None:
        model = self.model
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


def _mean_ms(per_second: Counter, second: int) -> float | None:
    n = per_second[(second, "requests")]
    return round(per_second[(second, "latency_ms")] / n, 3) if n else None


def _encode(hist: HdrHistogram) -> str:
    return base64.b64encode(hist.encode()).decode()
