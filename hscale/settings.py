"""Every knob of a sweep: its name, default, meaning and validation, in one table.

The Makefile passes its variables through the environment (make exports command-line
variables), the CLI adds a flag per knob, and `hscale knobs` prints this table, so a
default lives here and nowhere else.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import psutil

from hscale import cpusplit, paths, runtimes, stores
from hscale.errors import UsageError

LOAD_MODELS = ("closed", "rate")
FAULTS = ("kill-replica", "pause-replica", "restart-store")  # FAULT=all
# Swarm across machines only, and asked for by name: a node drained (its tasks moved by
# swarm) or stopped (the test cluster's node container: a machine lost).
NODE_FAULTS = ("drain-node", "stop-node")
# CPU left for nginx, the store and the load generator beside the replicas.
RESERVED_CPUS = 1.0
MIN_REPLICA_CPUS = 0.05


def _int(name: str, lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not re.fullmatch(r"\s*\d+\s*", raw):
            raise UsageError(f"{name} must be a whole number from {lo} to {hi}, got {raw!r}")
        value = int(raw)
        if not lo <= value <= hi:
            raise UsageError(f"{name} must be a whole number from {lo} to {hi}, got {raw!r}")
        return value

    return parse


def _seconds(name: str, lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        m = re.fullmatch(r"\s*(\d{1,9}(?:\.\d{1,9})?)\s*(s|m)?\s*", raw)
        if not m:
            raise UsageError(f"{name} must be a duration like 20 or 20s or 2m, got {raw[:40]!r}")
        value = float(m.group(1)) * (60 if m.group(2) == "m" else 1)
        if not lo <= value <= hi:
            raise UsageError(f"{name} must be from {lo:g} to {hi:g} s, got {raw!r}")
        return value

    return parse


def _number(name: str, what: str, lo: float, hi: float) -> Callable[[str], float]:
    """A finite number from lo to hi."""

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not lo <= value <= hi:
            raise UsageError(
                f"{name} must be a number of {what} from {lo:g} to {hi:g}, got {raw[:40]!r}"
            )
        return value

    return parse


def _sweep(raw: str) -> tuple[int, ...]:
    parts = raw.replace(",", " ").split()
    parse = _int("each SWEEP value", 1, 256)
    values = tuple(parse(p) for p in parts)
    if not values:
        raise UsageError('SWEEP must list replica counts, e.g. SWEEP="1 2 4 8"')
    if len(set(values)) != len(values):
        raise UsageError(f"SWEEP must not repeat a replica count, got {raw!r}")
    return tuple(sorted(values))


def _choice(name: str, options: Callable[[], tuple[str, ...] | list[str]]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in options():
            raise UsageError(f"unknown {name} {raw!r}; choose one of: {', '.join(options())}")
        return value

    return parse


def _fraction(name: str) -> Callable[[str], float]:
    """0 (off) or a fraction below 1, written 0.05 or 5%."""

    def parse(raw: str) -> float:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%)?\s*", raw)
        value = float(m.group(1)) / (100 if m.group(2) else 1) if m else math.nan
        if not 0 <= value < 1:
            raise UsageError(f"{name} must be 0 (off) or a fraction like 0.05 or 5%, got {raw!r}")
        return value

    return parse


def _memory(raw: str) -> str:
    value = raw.strip().lower()
    if not re.fullmatch(r"\d+[kmg]", value) or int(value[:-1]) == 0:
        raise UsageError(f"REPLICA_MEMORY must be a size like 256m or 1g, got {raw!r}")
    return value


def _text(raw: str) -> str:
    return raw


# nginx reads log paths under RESULTS from its configuration: none of these may appear.
UNSAFE_IN_PATHS = re.compile(r"[\s;{}\"'$\\#]")


def _results(raw: str) -> str:
    """An absolute path (nginx and the replicas run in other directories) that is, or can
    be made, a writable directory, with nothing nginx would read as syntax."""
    path = os.path.abspath(os.path.expanduser(raw))
    if UNSAFE_IN_PATHS.search(path):
        raise UsageError(
            f"RESULTS={raw!r} has a space or one of ; {{ }} \" ' $ \\ #, which nginx's "
            "configuration cannot hold; choose another directory"
        )
    probe = path
    while not os.path.exists(probe):  # the nearest existing ancestor must be writable
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"RESULTS={raw!r}: {probe} is not a directory this user can write to")
    return path


def _address(raw: str) -> str:
    """An IPv4 address of this host (nginx is published there and nowhere else), or
    0.0.0.0 for every interface, which a user must ask for by name."""
    value = raw.strip()
    try:
        ip = ipaddress.IPv4Address(value)
    except ValueError:
        raise UsageError(f"PUBLISH_ADDRESS must be an IPv4 address, got {raw[:40]!r}") from None
    own = {a.address for nic in psutil.net_if_addrs().values() for a in nic}
    if not ip.is_unspecified and value not in own:
        raise UsageError(f"PUBLISH_ADDRESS={value} is not an address of this host")
    return value


def _node(name: str) -> Callable[[str], str]:
    """A swarm node's name (its hscale.node label: node-1, ...); checked against the
    swarm's nodes when the runtime starts."""

    def parse(raw: str) -> str:
        value = raw.strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", value):
            raise UsageError(f"{name} must name a swarm node, like node-1, got {raw[:40]!r}")
        return value

    return parse


def _registry(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not re.fullmatch(r"[a-z0-9.-]+(:\d{1,5})?(/[a-z0-9._-]+)*", value):
        raise UsageError(
            f"REGISTRY must be a registry like host:5000 or host/team, got {raw[:60]!r}"
        )
    return value


def _faults(raw: str) -> tuple[str, ...]:
    names = raw.replace(",", " ").split()
    if names == ["all"]:
        return FAULTS
    bad = [n for n in names if n not in FAULTS + NODE_FAULTS]
    if bad or not names:
        known = ", ".join(FAULTS + NODE_FAULTS)
        raise UsageError(f"unknown FAULT {raw!r}; choose all or any of: {known}")
    return tuple(dict.fromkeys(names))


def _path(name: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9._~/%?=&+-]*", raw):
            raise UsageError(f"{name} must be a URL path such as /healthz, got {raw!r}")
        return raw

    return parse


@dataclass(frozen=True)
class Knob:
    name: str
    default: str | None  # None: derived (see `derived`)
    parse: Callable[[str], Any]
    help: str
    derived: str = ""


KNOBS: tuple[Knob, ...] = (
    Knob("REPLICAS", "4", _int("REPLICAS", 1, 256), "sweep N = 1..REPLICAS"),
    Knob("SWEEP", None, _sweep, "explicit list of N instead of 1..REPLICAS", "1..REPLICAS"),
    Knob(
        "SCENARIO",
        "mixed",
        _choice("scenario", paths.scenarios),
        "load scenario: a loadtests/scenario_<name>.py",
    ),
    Knob(
        "STORE",
        None,
        _choice("STORE", lambda: tuple(stores.STORES)),  # read late: the registry decides
        "the shared data store: redis, memcached, postgres, memory (the reference app's dict "
        "in each process, not shared: the anti-pattern) or none (your app without one)",
        "redis; none with APP or IMAGE",
    ),
    Knob(
        "APP",
        None,
        _text,
        "your app: a directory with a WSGI app and requirements.txt or pyproject.toml, run "
        "as the replicas instead of the reference app (docs/your-app.md)",
        "the reference app",
    ),
    Knob(
        "APP_MODULE",
        None,
        _text,
        "APP's WSGI app for gunicorn: package.module:app or package:create_app()",
        "guessed when APP has one candidate",
    ),
    Knob(
        "IMAGE",
        None,
        _text,
        "docker/swarm: a prebuilt image of your app to run as the replicas (name:tag)",
        "built from APP",
    ),
    Knob(
        "APP_CONTAINER_PORT",
        "8000",
        _int("APP_CONTAINER_PORT", 1, 65535),
        "the port your IMAGE's app listens on inside its container",
    ),
    Knob(
        "APP_INIT",
        None,
        _text,
        "a one-shot shell command run once, with the store's variables, before the "
        "replicas start (e.g. flask --app app init-db)",
        "none",
    ),
    Knob(
        "HEALTH_PATH",
        None,
        _path("HEALTH_PATH"),
        "the path that answers 2xx when a replica is ready",
        "/readyz for the reference app, / for yours",
    ),
    Knob(
        "READY_TIMEOUT",
        "60",
        _seconds("READY_TIMEOUT", 1, 600),
        "seconds a replica has to answer HEALTH_PATH before the sweep stops",
    ),
    Knob(
        "LOCUSTFILE",
        None,
        _text,
        "your own Locust file, run unchanged (hscale's hooks attach from outside)",
        "APP/locustfile.py, else SCENARIO's",
    ),
    Knob(
        "TRIALS",
        "2",
        _int("TRIALS", 1, 100),
        "rounds of trials every N gets, the order of N alternating between rounds; more "
        "follow while CI_TARGET is not met and TIME_BUDGET allows, and one replaces a trial "
        "a validity check took from a point (unless half its trials failed)",
    ),
    Knob(
        "CI_TARGET",
        "5%",
        _fraction("CI_TARGET"),
        "add trials, widest CI first, until each N's 95% CI half-width is at most this "
        "share of its mean (0: exactly TRIALS), within MAX_TRIALS and TIME_BUDGET",
    ),
    Knob("MAX_TRIALS", "10", _int("MAX_TRIALS", 1, 100), "cap on trials per N with CI_TARGET"),
    Knob(
        "TIME_BUDGET",
        "6m",
        _seconds("TIME_BUDGET", 0, 86400),
        "wall time for the sweep's trials (after the images exist); no trial is added "
        "once the next one would overrun it (0: no limit). The first TRIALS rounds always run",
    ),
    Knob(
        "WARMUP_TRIAL",
        "15",
        _seconds("WARMUP_TRIAL", 0, 600),
        "seconds of load at the first N before the first measured trial, discarded: the "
        "first trial of a cold stack and host runs slow (0: none)",
    ),
    Knob(
        "SPEED_ADJUST",
        "1",
        _choice("SPEED_ADJUST", lambda: ("0", "1")),
        "1: take the host's speed changes out of the throughputs with the speed probe "
        "(a control variate; raw figures are kept beside); 0: raw throughputs only",
    ),
    Knob(
        "DRIFT_ADJUST",
        "1",
        _choice("DRIFT_ADJUST", lambda: ("0", "1")),
        "1: take a slow drift of the host through the run out of the throughputs (a linear "
        "trend in trial order, fitted within each N beside the host speed); 0: not",
    ),
    Knob(
        "LOAD",
        "closed",
        _choice("LOAD", lambda: LOAD_MODELS),
        "closed: fixed users, no think time (finds the maximum throughput); rate: open loop "
        "at a fixed arrival rate RATE, latency timed from the intended send time",
    ),
    Knob(
        "RATE",
        None,
        _number("RATE", "requests per second", 0.1, 1e6),
        "offered requests per second with LOAD=rate",
        "required",
    ),
    Knob("DURATION", "10", _seconds("DURATION", 1, 3600), "measured seconds per trial"),
    Knob("WARMUP", "3", _seconds("WARMUP", 0, 600), "warm-up seconds per trial, discarded"),
    Knob(
        "USERS",
        None,
        _int("USERS", 1, 100_000),
        "Locust users, the same at every N",
        "USERS_PER_REPLICA x N",
    ),
    Knob(
        "USERS_PER_REPLICA",
        "8",
        _int("USERS_PER_REPLICA", 1, 10_000),
        "users per replica when USERS is not set, so every N is saturated",
    ),
    Knob(
        "LOADGEN_WORKERS",
        "0",
        _int("LOADGEN_WORKERS", 0, 64),
        "0: one Locust process; k: a Locust master and k worker processes, merged exactly",
    ),
    Knob(
        "SWARM",
        "auto",
        _choice("SWARM", lambda: ("auto", "cluster", "local")),
        "RUNTIME=swarm on `cluster` (the test cluster of `make cluster`) or `local` (this "
        "host's engine, a swarm manager); auto: the cluster when one is up",
    ),
    Knob(
        "REGISTRY",
        None,
        _registry,
        "swarm: the registry every node pulls from (host[:port][/path]); hscale pushes "
        "its images there first",
        "none: the images must be on every node (one node: they are); a cluster: its own",
    ),
    Knob(
        "PLACE_NGINX",
        None,
        _node("PLACE_NGINX"),
        "swarm: the node (its hscale.node label) that runs nginx",
        "the manager, on a cluster",
    ),
    Knob(
        "PLACE_STORE",
        None,
        _node("PLACE_STORE"),
        "swarm: the node that runs the store",
        "the manager, on a cluster",
    ),
    Knob(
        "PLACE_LOADGEN",
        None,
        _node("PLACE_LOADGEN"),
        "swarm: the node that runs the Locust workers, kept apart from the replicas",
        "the last node, on a cluster of 3 or more",
    ),
    Knob(
        "LOADGEN_CPUS",
        None,
        _number("LOADGEN_CPUS", "CPUs", MIN_REPLICA_CPUS, 1024),
        "CPU quota (cgroup) of the load generator on this host, all its processes together; "
        "unset: no quota, one core per Locust process",
        "no quota",
    ),
    Knob(
        "REPLICA_CPUS",
        None,
        _number("REPLICA_CPUS", "CPUs", MIN_REPLICA_CPUS, 1024),
        "CPU budget of each replica (cgroup quota)",
        f"(host CPUs - {RESERVED_CPUS:g}) / largest N",
    ),
    Knob(
        "RUNTIME",
        "auto",
        _choice("runtime", lambda: (runtimes.AUTO, *runtimes.RUNTIMES)),
        "where the stack runs: docker (compose), swarm (stack) or local processes; "
        "auto = docker when an engine answers, else local",
    ),
    Knob("REPLICA_MEMORY", "256m", _memory, "memory limit of each app container (docker)"),
    Knob(
        "OFFLINE",
        "auto",
        _choice("OFFLINE", lambda: ("auto", "0", "1")),
        "images: 1 builds bases from Debian packages (no registry), 0 needs a registry, "
        "auto tries the registry first",
    ),
    Knob(
        "WORKERS",
        None,
        _int("WORKERS", 1, 64),
        "gunicorn worker processes per replica, sized from its CPU budget, not the host's",
        "REPLICA_CPUS rounded up",
    ),
    Knob(
        "WORKER_CLASS",
        "gthread",
        _choice("WORKER_CLASS", lambda: ("gthread", "sync")),
        "gunicorn worker class",
    ),
    Knob("THREADS", "4", _int("THREADS", 1, 256), "threads per gthread worker"),
    Knob(
        "BALLAST",
        "1",
        _choice("BALLAST", lambda: ("0", "1")),
        "1: run (largest N - N) busy loops under a replica's quota, so the host is equally "
        "loaded at every N",
    ),
    Knob(
        "BALANCE_HOST",
        "0",
        _choice("BALANCE_HOST", lambda: ("0", "1")),
        "1 (with BALLAST=1): one more busy loop makes up what the load generator, nginx and "
        "the store use less at this N than at the largest (an experiment: it did not remove "
        "the load generator's bias here, see docs/measurement.md)",
    ),
    Knob(
        "CPU_SPLIT",
        "0",
        _choice("CPU_SPLIT", lambda: ("auto", "0", "1")),
        "1: the replicas, ballast and speed probe on CPUs of their own, the load generator, "
        "nginx and the store on the others (auto: when the budgets leave a CPU over)",
    ),
    Knob(
        "CPU_PERIOD_US",
        "100000",
        _int("CPU_PERIOD_US", 1000, 1_000_000),
        "CFS period of every CPU quota, in microseconds: a replica runs quota/period of "
        "each period and waits out the rest, so the period bounds the wait a request sees",
    ),
    Knob(
        "FAULT",
        "all",
        _faults,
        "`hscale faults`: the faults to inject, one trial each: kill-replica (SIGKILL one "
        "replica), pause-replica (SIGSTOP it for FAULT_PAUSE), restart-store; or all",
    ),
    Knob(
        "FAULT_N",
        None,
        _int("FAULT_N", 1, 256),
        "`hscale faults`: the N to run them at",
        "largest N",
    ),
    Knob(
        "FAULT_AT",
        None,
        _seconds("FAULT_AT", 0, 3600),
        "`hscale faults`: seconds into the measured window when the fault strikes",
        "DURATION / 3",
    ),
    Knob(
        "FAULT_PAUSE",
        "3",
        _seconds("FAULT_PAUSE", 0.1, 600),
        "`hscale faults`: how long pause-replica keeps the replica stopped",
    ),
    Knob("PORT", "8080", _int("PORT", 1, 65535), "nginx's port on PUBLISH_ADDRESS (the way in)"),
    Knob(
        "PUBLISH_ADDRESS",
        "127.0.0.1",
        _address,
        "the one address of this host nginx is published on (0.0.0.0: every interface)",
    ),
    Knob(
        "APP_PORT",
        "8101",
        _int("APP_PORT", 1, 65535),
        "first replica port; replica i listens on APP_PORT + i - 1",
    ),
    Knob(
        "STORE_PORT", "6390", _int("STORE_PORT", 1, 65535), "local: the store's port on 127.0.0.1"
    ),
    Knob("RESULTS", str(paths.RESULTS_DIR), _results, "directory that receives results/<run-id>/"),
)


@dataclass(frozen=True)
class Settings:
    sweep: tuple[int, ...]
    scenario: str
    store: str
    trials: int
    ci_target: float
    max_trials: int
    time_budget: float
    warmup_trial: float
    speed_adjust: bool
    drift_adjust: bool
    load: str
    rate: float | None
    duration: float
    warmup: float
    users: int | None
    users_per_replica: int
    loadgen_workers: int
    swarm: str
    registry: str | None
    place_nginx: str | None
    place_store: str | None
    place_loadgen: str | None
    loadgen_cpus: float | None
    replica_cpus: float
    replica_cpus_source: str
    runtime: str
    replica_memory: str
    offline: str
    workers: int
    worker_class: str
    threads: int
    ballast: bool
    balance_host: bool
    cpu_split: str
    cpu_period_us: int
    port: int
    publish_address: str
    app_port: int
    store_port: int
    results: str
    app: str | None = None
    app_module: str | None = None
    image: str | None = None
    app_container_port: int = 8000
    app_init: str | None = None
    health_path: str | None = None
    ready_timeout: float = 60.0
    locustfile: str | None = None
    faults: tuple[str, ...] = FAULTS
    fault_n: int | None = None
    fault_at: float | None = None
    fault_pause: float = 3.0
    host_cpus: int = field(default=os.cpu_count() or 1)

    @property
    def entry_address(self) -> str:
        """Where this host reaches nginx: PUBLISH_ADDRESS, or loopback for 0.0.0.0."""
        return "127.0.0.1" if self.publish_address == "0.0.0.0" else self.publish_address

    def users_at(self, n: int) -> int:
        return self.users if self.users is not None else self.users_per_replica * n

    def fits_host(self, n: int) -> bool:
        """Whether N replica budgets plus the reserve fit the host's CPUs."""
        return n * self.replica_cpus + RESERVED_CPUS <= self.host_cpus + 1e-9

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["sweep"] = list(self.sweep)
        d["reserved_cpus"] = RESERVED_CPUS
        return d


def default_replica_cpus(largest_n: int, host_cpus: int) -> float:
    """Largest budget, in steps of 0.05 CPU, that lets the largest N fit beside the rest."""
    budget = (host_cpus - RESERVED_CPUS) / largest_n
    return round(max(MIN_REPLICA_CPUS, math.floor(budget / 0.05 + 1e-9) * 0.05), 2)


def load(values: Mapping[str, str | None], host_cpus: int | None = None) -> Settings:
    """Parse knobs (from flags or the environment; blank means unset) into Settings.

    Raises UsageError with a one-line message on any bad value.
    """
    raw = {k.name: (values.get(k.name) or "").strip() or k.default for k in KNOBS}
    # Each knob's parser gives its own type: Settings' fields say which.
    parsed: dict[str, Any] = {}
    for k in KNOBS:
        value = raw[k.name]
        parsed[k.name] = k.parse(value) if value is not None else None
    sweep = parsed["SWEEP"] or tuple(range(1, parsed["REPLICAS"] + 1))
    cpus = host_cpus or os.cpu_count() or 1
    replica_cpus = parsed["REPLICA_CPUS"]
    source = "REPLICA_CPUS"
    if replica_cpus is None:
        replica_cpus = default_replica_cpus(max(sweep), cpus)
        source = "default"
    if replica_cpus > cpus:
        raise UsageError(f"REPLICA_CPUS={replica_cpus:g} is more than this host's {cpus} CPUs")
    if parsed["LOADGEN_CPUS"] is not None and parsed["LOADGEN_CPUS"] > cpus:
        raise UsageError(
            f"LOADGEN_CPUS={parsed['LOADGEN_CPUS']:g} is more than this host's {cpus} CPUs"
        )
    node_faults = [f for f in parsed["FAULT"] if f in NODE_FAULTS]
    if node_faults and parsed["RUNTIME"] != "swarm":
        raise UsageError(f"FAULT={node_faults[0]} needs RUNTIME=swarm (a swarm of several nodes)")
    ports = [parsed["PORT"], parsed["STORE_PORT"]]
    app_ports = range(parsed["APP_PORT"], parsed["APP_PORT"] + max(sweep))
    if app_ports[-1] > 65535:
        raise UsageError(f"APP_PORT={parsed['APP_PORT']} leaves no room for {max(sweep)} replicas")
    clash = [p for p in ports if p in app_ports] + ([ports[0]] if ports[0] == ports[1] else [])
    if clash:
        raise UsageError(
            f"port {clash[0]} is given to two components; change PORT, APP_PORT or STORE_PORT"
        )
    if parsed["LOAD"] == "rate" and parsed["RATE"] is None:
        raise UsageError("LOAD=rate needs RATE, the offered requests per second (e.g. RATE=500)")
    if parsed["LOAD"] == "closed" and parsed["RATE"] is not None:
        raise UsageError("RATE applies to LOAD=rate only; closed-loop load is set by USERS")
    # The kernel refuses a CFS quota below 1 ms.
    if replica_cpus * parsed["CPU_PERIOD_US"] < 1000:
        raise UsageError(
            f"REPLICA_CPUS={replica_cpus:g} x CPU_PERIOD_US={parsed['CPU_PERIOD_US']} is a "
            "quota below the kernel's 1000 us minimum; raise either"
        )
    if parsed["CPU_SPLIT"] == "1":
        if parsed["RUNTIME"] == "swarm":
            raise UsageError("CPU_SPLIT=1 applies to one host: RUNTIME=docker or local")
        split, why = cpusplit.plan(cpusplit.available(), max(sweep) * replica_cpus)
        if split is None:
            raise UsageError(f"CPU_SPLIT=1: {why}")
    if parsed["MAX_TRIALS"] < parsed["TRIALS"]:
        raise UsageError(f"MAX_TRIALS={parsed['MAX_TRIALS']} is below TRIALS={parsed['TRIALS']}")
    return Settings(
        sweep=sweep,
        scenario=parsed["SCENARIO"],
        store=parsed["STORE"] or ("none" if parsed["APP"] or parsed["IMAGE"] else "redis"),
        trials=parsed["TRIALS"],
        ci_target=parsed["CI_TARGET"],
        max_trials=parsed["MAX_TRIALS"],
        time_budget=parsed["TIME_BUDGET"],
        warmup_trial=parsed["WARMUP_TRIAL"],
        speed_adjust=parsed["SPEED_ADJUST"] == "1",
        drift_adjust=parsed["DRIFT_ADJUST"] == "1",
        load=parsed["LOAD"],
        rate=parsed["RATE"],
        duration=parsed["DURATION"],
        warmup=parsed["WARMUP"],
        users=parsed["USERS"],
        users_per_replica=parsed["USERS_PER_REPLICA"],
        loadgen_workers=parsed["LOADGEN_WORKERS"],
        swarm=parsed["SWARM"],
        registry=parsed["REGISTRY"],
        place_nginx=parsed["PLACE_NGINX"],
        place_store=parsed["PLACE_STORE"],
        place_loadgen=parsed["PLACE_LOADGEN"],
        loadgen_cpus=parsed["LOADGEN_CPUS"],
        replica_cpus=replica_cpus,
        replica_cpus_source=source,
        runtime=parsed["RUNTIME"],
        replica_memory=parsed["REPLICA_MEMORY"],
        offline=parsed["OFFLINE"],
        workers=parsed["WORKERS"] or math.ceil(replica_cpus - 1e-9),
        worker_class=parsed["WORKER_CLASS"],
        threads=parsed["THREADS"],
        ballast=parsed["BALLAST"] == "1",
        balance_host=parsed["BALANCE_HOST"] == "1",
        cpu_split=parsed["CPU_SPLIT"],
        cpu_period_us=parsed["CPU_PERIOD_US"],
        port=parsed["PORT"],
        publish_address=parsed["PUBLISH_ADDRESS"],
        app_port=parsed["APP_PORT"],
        store_port=parsed["STORE_PORT"],
        results=parsed["RESULTS"],
        app=parsed["APP"],
        app_module=parsed["APP_MODULE"],
        image=parsed["IMAGE"],
        app_container_port=parsed["APP_CONTAINER_PORT"],
        app_init=parsed["APP_INIT"],
        health_path=parsed["HEALTH_PATH"],
        ready_timeout=parsed["READY_TIMEOUT"],
        locustfile=parsed["LOCUSTFILE"],
        faults=parsed["FAULT"],
        fault_n=parsed["FAULT_N"],
        fault_at=parsed["FAULT_AT"],
        fault_pause=parsed["FAULT_PAUSE"],
        host_cpus=cpus,
    )


def bench_command(s: Settings) -> str:
    """`make bench` with the knobs that shape this sweep, for advice to run it again."""
    sweep = list(s.sweep)
    parts = ["make bench"]
    if sweep == list(range(1, max(sweep) + 1)):
        parts.append(f"REPLICAS={max(sweep)}")
    else:
        parts.append(f'SWEEP="{" ".join(map(str, sweep))}"')
    user_app = bool(s.app or s.image)
    defaults = {k.name: k.default for k in KNOBS} | {"STORE": "none" if user_app else "redis"}
    for name, value in (
        ("APP", s.app),
        ("IMAGE", s.image),
        ("APP_MODULE", s.app_module),
        ("LOCUSTFILE", s.locustfile),
        ("SCENARIO", None if user_app else s.scenario),
        ("STORE", s.store),
        ("RUNTIME", s.runtime),
        ("CPU_PERIOD_US", str(s.cpu_period_us)),
        ("CPU_SPLIT", s.cpu_split),
    ):
        if value is not None and value != defaults[name]:
            parts.append(f"{name}={shlex.quote(value)}")
    if s.replica_cpus_source != "default":
        parts.append(f"REPLICA_CPUS={s.replica_cpus:g}")
    return " ".join(parts)
