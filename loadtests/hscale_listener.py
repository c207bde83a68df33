"""Locust event hooks shared by every scenario: the numbers hscale reads.

Imported by each scenario file, or loaded beside your own Locust file as a second
locustfile (`-f yours.py,hscale_listener.py`: yours needs no change). It keeps a tally
of the measurement window only: warm-up requests are discarded by resetting Locust's
own stats and this tally after HSCALE_WARMUP seconds, so Locust's CSV/JSON and hscale
agree.

It records every response time into an HdrHistogram (exact percentiles; Locust's
own buckets keep ~2 significant digits), counts the X-Upstream header that nginx puts
on every response (proof that each replica got traffic, for any app), keeps a per-second series and
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

Consistency (the tally's "consistency"): over the whole run, warm-up included, since the
harness compares it with the store's counter read before and after the trial. POST
/counter is counted when sent and when acknowledged; every user remembers its own
acknowledged /kv and /session writes, and each later read of them is judged fresh,
missing or stale. Scenarios call `check_read(response)` to make a bad read a Locust
failure as well.

The tally itself (histograms, per-replica counts, consistency counts, the distributed
merge) is hscale_tally.py, which imports no Locust; this module is the hooks around it.
"""

from __future__ import annotations

import functools
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import gevent
import gevent.local
from hscale_tally import LoadModel, Tally
from locust import events
from locust.clients import HttpSession
from locust.contrib.fasthttp import FastHttpSession
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

PHASE_MESSAGE = "hscale_phase"
UPSTREAM_HEADER = "X-Upstream"  # set by nginx: the replica that answered (nginx.conf.template)


def served_by(value: str | None) -> str | None:
    """The last server nginx tried, as hscale.runtimes.base.served_by reads it."""
    if not value:
        return None
    return value.replace(" : ", ", ").split(",")[-1].strip() or None


_user = gevent.local.local()  # per greenlet, i.e. per user: next_send, intended


def pacing(_user_instance: object) -> float:
    """wait_time of every scenario: 0 in closed loop; in open loop the time left until
    this user's next intended send (0 when behind: it catches up without skipping)."""
    model = tally.model
    if model.rate is None:
        return 0.0
    now = time.time()
    intended = getattr(_user, "next_send", None)
    if intended is None:  # a random phase, so users' schedules interleave
        intended = now + random.random() * model.interval
    _user.next_send = intended + model.interval
    _user.intended = intended  # claimed by the iteration's first request (on_request)
    return max(0.0, intended - now)


tally = Tally()


# -- consistency: reads of the user's own writes, and counter sends ----------------------


def _target(response: Any) -> tuple[str, str, str, Any] | None:
    """(method, kind, key, request) of a /counter, /kv/<key> or /session request."""
    request = getattr(response, "request", None)
    url = getattr(request, "url", None)
    if not url:
        return None
    path = urlsplit(url).path
    if path == "/counter":
        return request.method, "counter", "", request
    if path.startswith("/kv/"):
        return request.method, "kv", unquote(path[4:]), request
    if path == "/session":
        return request.method, "session", request.headers.get("X-User") or "", request
    return None


def _written() -> dict[tuple[str, str], Any]:
    """This user's last acknowledged write per (kind, key): the greenlet is the user."""
    if not hasattr(_user, "written"):
        _user.written = {}
    return _user.written


def _body(payload: Any) -> Any:
    try:
        return json.loads(payload)
    except (TypeError, ValueError):
        return None


def _verdict(kind: str, key: str, response: Any) -> str | None:
    """fresh, missing, stale or failed; None unless the user wrote this key itself."""
    expected = _written().get((kind, key))
    if expected is None:
        return None
    status = response.status_code or 0  # 0 or None: no response at all
    if status == 404:
        return "missing"
    body = _body(response.content) if status == 200 else None
    if not isinstance(body, dict):
        return "failed"
    if kind == "kv":
        fresh = body.get("value") == expected
    else:  # a version below the acknowledged one, or other data: an older write
        data, version = expected
        fresh = body.get("data") == data and (body.get("version") or 0) >= version
    return "fresh" if fresh else "stale"


def _count_consistency(response: Any) -> None:
    target = _target(response)
    if target is None:
        return
    method, kind, key, request = target
    ok = 200 <= (response.status_code or 0) < 300
    counts = tally.consistency
    if kind == "counter":
        if method == "POST":
            counts.add(kind, "acknowledged" if ok else "failed")
    elif method == "GET":
        verdict = _verdict(kind, key, response)
        if verdict == "failed":
            counts.add(kind, "failed")
        elif verdict is not None:
            counts.add(kind, "reads")
            if verdict != "fresh":
                counts.add(kind, verdict)
    elif method in ("PUT", "POST"):
        acknowledged = _acknowledged(kind, request, response) if ok else None
        if acknowledged is None:  # unknown outcome: either value may be read next
            _written().pop((kind, key), None)
        else:
            _written()[(kind, key)] = acknowledged
            counts.add(kind, "writes")


def _acknowledged(kind: str, request: Any, response: Any) -> Any:
    """What a later read must return: kv, the value the server echoed; session, the data
    sent and the version the server returned."""
    body = _body(response.content)
    if not isinstance(body, dict):
        return None
    if kind == "kv":
        return body.get("value")
    sent = _body(getattr(request, "body", None))
    if not isinstance(sent, dict) or "data" not in sent or "version" not in body:
        return None
    return sent["data"], body["version"]


def check_read(response: Any) -> None:
    """Inside `with self.client.get(..., catch_response=True) as response`: fail a read of
    the user's own write that came back missing or stale, so the failure rate shows it
    too (the request hook counts it in the tally either way)."""
    target = _target(response)
    if target and target[0] == "GET":
        verdict = _verdict(target[1], target[2], response)
        if verdict in ("missing", "stale"):
            response.failure(f"{target[1]} read {verdict}: not the user's last acknowledged write")


def _counting_sends(request: Callable[..., Any]) -> Callable[..., Any]:
    """Count POST /counter when sent: Locust stops users mid-request with no request
    event, and such an increment may still land, so counting answers alone could leave
    the counter above the attempts."""

    @functools.wraps(request)
    def send(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if str(method).upper() == "POST" and urlsplit(str(url)).path == "/counter":
            tally.consistency.add("counter", "attempts")
        return request(self, method, url, *args, **kwargs)

    send.hscale_counting = True  # type: ignore[attr-defined]
    return send


for _session in (FastHttpSession, HttpSession):
    if not getattr(_session.request, "hscale_counting", False):
        _session.request = _counting_sends(_session.request)


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
    if os.environ.get("HSCALE_OWN_LOCUSTFILE") == "1":
        # Your own file, unchanged: LOAD decides the pacing (closed: none, the maximum
        # throughput; rate: the open-loop schedule), not the file's wait_time. On
        # workers too: they run the users.
        for user_class in environment.user_classes:
            user_class.wait_time = pacing
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
    replica = served_by(headers.get(UPSTREAM_HEADER)) if headers else None
    # Fired in the user's greenlet: its pending intended send, if any, is this request's.
    intended, lag_ms = getattr(_user, "intended", None), None
    if intended is not None and start_time is not None:
        _user.intended = None  # the iteration's later requests are timed from their start
        lag_ms = max(0.0, (start_time - intended) * 1000)
    error = None if exception is None else repr(exception)
    tally.record(response_time, replica, error, lag_ms)
    if response is not None:
        _count_consistency(response)


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
    tally.model = load_model(environment.parsed_options)  # on workers: as the master sent it
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
    _write_tally()  # the harness may go on from here (loadgen.run_point's linger)
    # Locust writes its CSV once per interval and not at exit: wait one more tick so
    # locust_stats.csv covers the whole window too (users are already stopped).
    gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)


@events.quitting.add_listener
def on_quitting(environment, **_kw) -> None:
    if isinstance(environment.runner, MasterRunner):
        _write_tally()


def _write_tally() -> None:
    path = os.environ.get("HSCALE_TALLY_FILE")
    if path and tally.window_end is not None:
        _write(path, tally.dump())
