"""A realistic schema-2 run directory, built without running load, for report/compare tests,
and the checks those tests share (self-contained page, valid PNG and SVG).

Trials are simulated: a known USL curve with trial-to-trial noise; N = 1 under-loaded (so
E(2) > 1, as seen on real 2-core hosts) and one trial at the largest N invalid (load
generator saturated). Each has a raw tally.json with a per-second series (warm-up
included) and a real encoded HdrHistogram. Points and the analysis come from the same
functions hscale.sweep calls (analysis.aggregate, analysis.analyze), so the fixture has
the shape a real run has. With `consistency` set, each trial is judged, and the run
summarized, by analysis.consistency as hscale.sweep does: "shared" (a redis-like store:
one counter, every own write read back) or "memory" (per-process state: from N = 2 the
counters diverge and reads through another replica miss or go stale).
"""

from __future__ import annotations

import base64
import io
import json
import math
import random
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

from hdrh.histogram import HdrHistogram
from PIL import Image

from hscale.analysis import aggregate, analyze, consistency, usl
from hscale.analysis.latency import percentiles_ms

REPLICA_CPUS, HOST_CPUS = 0.2, 2
INVALID_REASON = "load generator saturated: Locust cpu_warning 2x (max 93% CPU)"


@dataclass
class RunSpec:
    run_id: str = "20250102-030405-counter-a1b2c3"
    ns: tuple[int, ...] = (1, 2, 3, 4)
    trials: int = 3
    lam: float = 300.0  # USL lambda, sigma, kappa of the simulated system
    sigma: float = 0.04
    kappa: float = 0.008
    n1_factor: float = 0.9  # N = 1 under-loaded: E(2) > 1
    noise: float = 0.02
    invalid: tuple[int, int] | None = (4, 2)  # (N, trial) saturated load generator
    warmup_s: float = 3.0
    duration_s: float = 10.0
    seed: int = 7
    status: str = "complete"
    scenario: str = "counter"
    store: str = "redis"
    store_process: bool = True  # a store component of its own (memory's is in each replica)
    store_demand_ms: float = 0.1  # store CPU ms per request, on top of 0.02 cores
    consistency: str | None = None  # "shared", "memory" or None: no check (older summaries)
    loadgen_cpus: float = 1.0  # the load generator's budget (one core per Locust process)
    extra: dict = field(default_factory=dict)  # top-level summary overrides


def _histogram(rng: random.Random, mean_ms: float, count: int) -> str:
    hist = HdrHistogram(1, 60_000_000, 3)
    for _ in range(count):
        hist.record_value(max(1, int(rng.lognormvariate(math.log(mean_ms * 1000), 0.5))))
    hist.record_value(int(mean_ms * 1000 * 25))  # one slow outlier, so max stands out
    return base64.b64encode(hist.encode()).decode()


def _series(rng: random.Random, rps: float, warmup_s: float, duration_s: float) -> list[dict]:
    rows = []
    for t in range(int(warmup_s + duration_s) + 1):
        ramp = min(1.0, 0.3 + 0.7 * t / max(warmup_s, 1))  # slow start: what warm-up hides
        requests = max(0, round(rps * ramp * rng.gauss(1, 0.03)))
        rows.append({"t": t, "requests": requests, "failures": int(t == 1)})
    return rows


def _components(spec: RunSpec, n: int, rps: float, saturated: bool) -> dict[str, dict]:
    def comp(kind: str, cores: float, budget: float | None) -> dict:
        return {
            "kind": kind,
            "cpu_cores": round(cores, 4),
            "budget_cpus": budget,
            "util_of_budget": round(cores / budget, 4) if budget else None,
            "throttled_periods": 0.4 if kind == "replica" else None,
            "throttled_s": 0.8 if kind == "replica" else 0.0,
            "demand_ms": round(cores / rps * 1000, 4),
        }

    out = {
        f"replica-{i}": comp("replica", REPLICA_CPUS * 0.97, REPLICA_CPUS) for i in range(1, n + 1)
    }
    out["nginx"] = comp("proxy", 0.05 + 0.0002 * rps, None)
    if spec.store_process:
        out["store"] = comp("store", 0.02 + spec.store_demand_ms * rps / 1000, None)
    busy = 0.95 * spec.loadgen_cpus if saturated else 0.3 + 0.0005 * rps
    out["loadgen"] = comp("loadgen", busy, spec.loadgen_cpus)
    out["overhead"] = comp("overhead", 0.03, None)
    return out


def _checked(
    spec: RunSpec, n: int, requests: int, seq: int
) -> tuple[dict, dict[str, int], dict[str, int]]:
    """(the listener's consistency counts, GET /counter per replica before, after) of a
    mixed load: a quarter of the requests increment, a third read kv, a sixth sessions."""
    acked = requests // 4
    reads = {"kv": requests // 3, "session": requests // 6}
    names = [f"replica-{i}" for i in range(1, n + 1)]
    wrong = spec.consistency == "memory" and n > 1
    # A read through another replica than the write's misses; now and then one finds an
    # older write there (stale).
    away = (n - 1) / n if wrong else 0.0
    missing = {"kv": 0.4 * away, "session": 0.5 * away}
    stale = {"kv": 0.1 * away, "session": 0.03 * away}
    counts = {
        "counter": {"attempts": acked + 4, "acknowledged": acked, "failed": 1, "abandoned": 3},
        **{
            kind: {
                "writes": r // 3,
                "reads": r,
                "missing": round(r * missing[kind]),
                "stale": round(r * stale[kind]),
                "failed": 0,
            }
            for kind, r in reads.items()
        },
    }
    if wrong:  # each replica counts only the increments it served: uneven under load
        before = dict.fromkeys(names, 0)
        weights = [1 + 0.03 * (n - i) for i in range(n)]
        after = {r: round(acked * w / sum(weights)) for r, w in zip(names, weights, strict=True)}
    else:  # one shared counter, read the same through every replica; 2 unacknowledged landed
        before = dict.fromkeys(names, 1000 * seq)
        after = dict.fromkeys(names, 1000 * seq + acked + 2)
    return counts, before, after


def _trial(spec: RunSpec, rng: random.Random, n: int, k: int, seq: int) -> tuple[dict, dict]:
    """(the summary's trial object, its raw tally.json)."""
    truth = float(usl.throughput([n], spec.lam, spec.sigma, spec.kappa)[0]) * (
        spec.n1_factor if n == 1 else 1
    )
    rps = round(truth * rng.gauss(1, spec.noise), 2)
    users = 16 * n
    requests = round(rps * spec.duration_s) + 3
    invalid = spec.invalid == (n, k)
    hist = _histogram(rng, users / rps * 1000, 2000)
    series = _series(rng, rps, spec.warmup_s, spec.duration_s)
    per_replica = {f"replica-{i}": requests // n for i in range(1, n + 1)}
    raw = f"points/n{n}/t{k}"
    tally = {
        "phase": "measure",
        "window_start": 1735783445.0 + seq * 20,
        "window_end": 1735783445.0 + seq * 20 + spec.duration_s,
        "duration_s": spec.duration_s,
        "warmup_s": spec.warmup_s,
        "requests": requests,
        "failures": 3,
        "per_replica_requests": per_replica,
        "errors": {"ConnectionResetError(104)": 3},
        "cpu_warnings": [91.5, 93.0] if invalid else [],
        "histogram": hist,
        "series": series,
        "workers": 0,
    }
    lat = percentiles_ms(hist)
    trial = {
        "replicas": n,
        "trial": k,
        "seq": seq,
        "users": users,
        "loadgen_workers": 0,
        "duration_s": spec.duration_s,
        "warmup_s": spec.warmup_s,
        "throughput_rps": rps,
        "requests": requests,
        "failures": 3,
        "failure_rate": round(3 / requests, 5),
        "latency_ms": lat,
        "per_replica_requests": per_replica,
        "components": _components(spec, n, rps, invalid),
        "host": {"cpus": HOST_CPUS, "busy_cores": round(n * REPLICA_CPUS + 0.6, 2)},
        "loadgen_cpu_warnings": tally["cpu_warnings"],
        "series": series,
        "drift": {"slope_rel_per_s": 0.001, "change_rel": 0.01, "flagged": False},
        "littles_law": {
            "users": users,
            "throughput_rps": rps,
            "mean_latency_ms": lat["mean"],
            "implied_users": round(rps * lat["mean"] / 1000, 2),
            "error_rel": round(rps * lat["mean"] / 1000 / users - 1, 4),
        },
        "open_loop": None,
        "oversubscribed": False,
        "valid": not invalid,
        "notes": [INVALID_REASON] if invalid else [],
        "warnings": [],
        "errors": tally["errors"],
        "raw": raw,
    }
    if spec.consistency:  # as hscale.sweep records it
        tally["consistency"], before, after = _checked(spec, n, requests, seq)
        trial["consistency"] = consistency.judge(tally["consistency"], before, after)
    return trial, tally


def redis_like(run_id: str = "20250102-050000-mixed-redis1") -> RunSpec:
    """A shared store that is right, and whose single thread saturates at N = 4."""
    return RunSpec(
        run_id=run_id,
        scenario="mixed",
        invalid=None,
        seed=5,
        store_demand_ms=1.0,
        consistency="shared",
    )


def memory_like(run_id: str = "20250102-050000-mixed-memor1") -> RunSpec:
    """Per-process state: faster (no store round trip) and, from N = 2, wrong."""
    return RunSpec(
        run_id=run_id,
        scenario="mixed",
        store="memory",
        lam=450.0,
        sigma=0.02,
        kappa=0.002,
        invalid=None,
        seed=13,
        store_process=False,
        consistency="memory",
        loadgen_cpus=2.0,  # two Locust processes keep up with it
    )


def manifest(spec: RunSpec) -> dict:
    """Shaped like hscale.sweep.manifest()."""
    return {
        "schema_version": 2,
        "run_id": spec.run_id,
        "command": "hscale bench",
        "git": {"sha": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
        "versions": {"python": "3.11.2", "hscale": "0.1.0", "locust": "2.43.1", "numpy": "2.4.6"},
        "host": {
            "hostname": "bench-host",
            "cpu_model": "Test CPU @ 2.40GHz",
            "cpu_count": HOST_CPUS,
            "memory_gib": 7.8,
            "kernel": "6.1.0-test",
            "os": "Linux-6.1.0-test-x86_64-with-glibc2.36",
            "load_average_at_start": [0.1, 0.2, 0.3],
        },
        "runtime": {
            "name": "local",
            "cpu_limits": "cgroup-v2",
            "cpu_limits_reason": None,
            "gunicorn": {"workers": 1, "worker_class": "gthread", "threads": 4},
        },
        "config": {
            "sweep": list(spec.ns),
            "scenario": spec.scenario,
            "store": spec.store,
            "trials": spec.trials,
            "ci_target": 0.0,
            "max_trials": 10,
            "load": "closed",
            "rate": None,
            "duration": spec.duration_s,
            "warmup": spec.warmup_s,
            "users": None,
            "users_per_replica": 16,
            "loadgen_workers": 0,
            "replica_cpus": REPLICA_CPUS,
            "replica_cpus_source": "REPLICA_CPUS",
            "runtime": "local",
            "replica_memory": "256m",
            "offline": "auto",
            "workers": 1,
            "worker_class": "gthread",
            "threads": 4,
            "ballast": True,
            "port": 8080,
            "app_port": 8101,
            "store_port": 6390,
            "results": "results",
            "host_cpus": HOST_CPUS,
            "reserved_cpus": 1.0,
        },
        "started_at": "2025-01-02T03:04:05+0000",
        "ended_at": "2025-01-02T03:09:05+0000",
        "status": spec.status,
    }


def make_run(root: Path, spec: RunSpec | None = None) -> Path:
    """Write results/<run_id>/ (summary.json, manifest.json, raw tallies) under root."""
    spec = spec or RunSpec()
    rng = random.Random(spec.seed)
    run = root / spec.run_id
    run.mkdir(parents=True)
    order = [(n, k) for k in range(1, spec.trials + 1) for n in spec.ns]
    trials, hists = [], {}
    for seq, (n, k) in enumerate(order):
        trial, tally = _trial(spec, rng, n, k, seq)
        raw = run / trial["raw"]
        raw.mkdir(parents=True)
        (raw / "tally.json").write_text(json.dumps(tally))
        trials.append(trial)
        hists[(n, k)] = tally["histogram"]
    points = aggregate.points(trials, hists)
    summary = {
        "schema_version": 2,
        "run_id": spec.run_id,
        "status": spec.status,
        "started_at": "2025-01-02T03:04:05+0000",
        "ended_at": "2025-01-02T03:09:05+0000",
        "error": None,
        "scenario": spec.scenario,
        "runtime": "local",
        "cpu_limits": "cgroup-v2",
        "server": {"workers": 1, "worker_class": "gthread", "threads": 4},
        "leftover_processes": [],
        "load": {"model": "closed", "rate_rps": None},
        "trial_plan": {"trials": spec.trials, "ci_target": 0.0, "max_trials": 10},
        "trials": trials,
        "points": points,
        "analysis": None,
        "analysis_error": None,
    }
    if spec.consistency:
        summary["consistency"] = consistency.summarize([t["consistency"] for t in trials])
    if len(points) >= 2:  # as hscale.sweep does
        summary["analysis"] = analyze.analyze(analyze.measurements_from_summary(summary), points)
    summary.update(spec.extra)
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    (run / "manifest.json").write_text(json.dumps(manifest(spec), indent=2))
    return run


# -- checks shared by the report and compare tests -----------------------------------------
# Attributes through which a page would fetch something when opened.
FETCHING = {"src", "href", "srcset", "data", "poster", "action", "formaction"}
REMOTE = re.compile(r"^\s*(https?:)?//", re.I)


class Page(HTMLParser):
    """What a test needs from a generated page: images, fetching attributes, tables by id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.fetching: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        d = dict(attrs)
        if tag == "img":
            self.imgs.append(d)
        self.fetching += [(tag, k, v or "") for k, v in attrs if k in FETCHING]
        if tag == "table":
            self._table = d.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def assert_self_contained(text: str) -> Page:
    """Nothing in the page fetches from elsewhere; every image is an embedded PNG."""
    page = Page(text)
    remote = [f for f in page.fetching if REMOTE.match(f[2])]
    assert not remote, f"page fetches remote resources: {remote}"
    assert "link" not in page.tags, "a <link> (stylesheet or font) would be fetched"
    scripts = [f for f in page.fetching if f[0] in ("script", "iframe", "object", "embed")]
    assert not scripts, f"external script or frame: {scripts}"
    assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", text, re.I), "CSS fetches"
    for img in page.imgs:
        assert (img.get("src") or "").startswith("data:image/png;base64,"), img.get("alt")
    return page


def embedded_png(img: dict) -> bytes:
    return base64.b64decode(img["src"].split(",", 1)[1], validate=True)


def assert_png(data: bytes) -> tuple[int, int]:
    """A complete, decodable PNG; returns its size in pixels."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), "not a PNG signature"
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    with Image.open(io.BytesIO(data)) as im:
        im.load()  # decodes every pixel: a truncated file fails here
        assert im.width > 100 and im.height > 100, im.size
        return im.size


def assert_svg(path: Path) -> None:
    root = ElementTree.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
    assert len(list(root.iter())) > 20, "an SVG with (nearly) nothing drawn"
