"""The run record: summary.json's shape as types, and the one loader every reader uses.

The TypedDicts below are the schema's source of truth: the writers (hscale/sweep.py,
analysis/aggregate.py) build these dicts, the readers (show, plot, report, compare,
analyze) get them from `read_summary`, and results/README.md documents each field (a
test checks that the two agree). `check` walks a parsed file against them, so a corrupt,
partial or older summary.json becomes one RecordError line naming the file, the field and
what was wrong, before any reader touches it. Fields that older runs lack are NotRequired;
readers use .get() for those.
"""

import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

SCHEMA_VERSION = 2
# Schema 1 recorded one measurement per N and no trials: `hscale analyze` still fits it.
OLDEST_ANALYZABLE = 1
Status = Literal["running", "complete", "interrupted", "failed"]
STATUSES: tuple[str, ...] = typing.get_args(Status)


class RecordError(ValueError):
    """A summary.json that cannot be read as a run record: one line, file and reason."""


class Component(TypedDict):
    kind: NotRequired[str]
    cpu_cores: NotRequired[float | None]
    budget_cpus: NotRequired[float | None]
    util_of_budget: NotRequired[float | None]
    demand_ms: NotRequired[float | None]


class Trial(TypedDict):
    replicas: int
    trial: int
    seq: NotRequired[int]
    users: NotRequired[int]
    duration_s: NotRequired[float]
    warmup_s: NotRequired[float]
    throughput_rps: float | None
    throughput_adj_rps: NotRequired[float | None]
    host_speed: NotRequired[float | None]
    requests: NotRequired[int]
    failures: NotRequired[int]
    latency_ms: NotRequired[dict[str, float | None]]
    per_replica_requests: NotRequired[dict[str, int]]
    components: NotRequired[dict[str, Component]]
    nodes: NotRequired[dict[str, str]]
    per_node_cpu: NotRequired[dict[str, float]]
    throttling: NotRequired[dict[str, Any] | None]
    ballast_topup_cores: NotRequired[float | None]
    valid: bool
    notes: NotRequired[list[str]]
    warnings: NotRequired[list[str]]
    raw: NotRequired[str]


class Point(TypedDict):
    replicas: int
    trials: int
    valid_trials: NotRequired[int]
    throughput_rps: float
    throughput_trials: list[float]
    throughput_raw_rps: NotRequired[float | None]
    throughput_ci: NotRequired[list[float] | None]
    throughput_ci_half: NotRequired[float | None]
    throughput_cv: NotRequired[float | None]
    latency_ms: dict[str, float | None]
    components: NotRequired[dict[str, Component]]
    bottleneck: NotRequired[dict[str, Any] | None]
    speedup: NotRequired[float | None]
    efficiency: NotRequired[float | None]
    efficiency_ci: NotRequired[list[float] | None]
    karp_flatt: NotRequired[float | None]
    valid: bool
    notes: list[str]
    warnings: NotRequired[list[str]]


class Analysis(TypedDict):
    model: str
    sigma: float
    kappa: float
    # lambda is a keyword: the field is checked through _EXTRA below.
    efficiency: dict[str, float | None]
    efficiency_ci: dict[str, list[float] | None]
    efficiency_calls: NotRequired[dict[str, str | None]]
    linear_up_to: NotRequired[int | None]
    peak_n: NotRequired[float | None]
    verdict: NotRequired[str]


class Target(TypedDict):
    kind: Literal["reference", "project", "image"]
    name: str
    wsgi: str | None
    project: str | None
    image: str | None
    port: int
    health_path: str
    init: str | None
    locustfile: str
    consistency_checked: bool


class Summary(TypedDict):
    schema_version: int
    run_id: NotRequired[str]
    status: Status
    started_at: NotRequired[str]
    ended_at: NotRequired[str | None]
    error: NotRequired[str | None]
    scenario: NotRequired[str]
    target: NotRequired[Target]
    runtime: NotRequired[str]
    trials: list[Trial]
    points: list[Point]
    analysis: NotRequired[Analysis | None]
    analysis_error: NotRequired[str | None]
    precision: NotRequired[dict[str, Any] | None]
    precision_status: NotRequired[dict[str, Any] | None]
    cpu_split: NotRequired[dict[str, Any] | None]
    # the newest `hscale loadgen-check` on this host, runtime and CPU_SPLIT, when one exists
    loadgen_check: NotRequired[dict[str, Any] | None]
    consistency: NotRequired[dict[str, Any] | None]


class PointV1(TypedDict):
    replicas: int
    throughput_rps: float | None


class SummaryV1(TypedDict):
    schema_version: Literal[1]
    points: list[PointV1]


_EXTRA: dict[object, dict[str, object]] = {Analysis: {"lambda": float}}


def _name(tp: object) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return {"float": "number", "int": "integer", "str": "string", "bool": "true/false",
                "list": "list", "dict": "object"}.get(tp.__name__, "object")  # fmt: skip
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " or ".join(json.dumps(a) for a in typing.get_args(tp))
    return _name(origin) if origin else "value"


def _fits(value: object, tp: object) -> bool:
    """A shallow type test: containers are walked by check(), not here."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (types.UnionType, typing.Union):
        return any(_fits(value, a) for a in typing.get_args(tp))
    if origin is Literal:
        return value in typing.get_args(tp)
    if tp is float:  # JSON has one number type; bool is not a number here
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type) and typing.is_typeddict(tp):
        return isinstance(value, dict)
    return isinstance(value, origin or tp)  # type: ignore[arg-type]


def check(value: object, tp: object, where: str) -> None:
    """Raise RecordError naming `where` (a JSON path) if value does not fit tp."""
    if not _fits(value, tp):
        got = "null" if value is None else type(value).__name__
        raise RecordError(f"{where} is {got}, expected {_name(tp)}")
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        for arm in typing.get_args(tp):
            if arm is not type(None) and _fits(value, arm):
                return check(value, arm, where)
        return None
    if isinstance(tp, type) and typing.is_typeddict(tp):
        assert isinstance(value, dict)
        extra = _EXTRA.get(tp, {})
        hints = {**typing.get_type_hints(tp), **extra}
        for key in sorted(typing.cast(Any, tp).__required_keys__ | set(extra)):
            if key not in value:
                raise RecordError(f"{where} has no {key!r}")
        for key, hint in hints.items():
            if key in value:
                check(value[key], hint, f"{where}.{key}")
        return None
    args = typing.get_args(tp)
    if origin is list and args:
        assert isinstance(value, list)
        for i, item in enumerate(value):
            check(item, args[0], f"{where}[{i}]")
    elif origin is dict and len(args) == 2:
        assert isinstance(value, dict)
        for key, item in value.items():
            check(item, args[1], f"{where}.{key}")
    return None


def validate(data: object, source: str, oldest: int = SCHEMA_VERSION) -> dict:
    """data as a Summary (or, with oldest=1, a SummaryV1); RecordError otherwise."""
    if not isinstance(data, dict):
        got = "null" if data is None else type(data).__name__
        raise RecordError(f"{source}: is {got}, not a JSON object")
    version = data.get("schema_version")
    if version == SCHEMA_VERSION:
        shape: object = Summary
    elif version == 1 and oldest <= 1:
        shape = SummaryV1
    elif isinstance(version, int) and version < SCHEMA_VERSION:
        raise RecordError(
            f"{source}: schema_version {version} is older than this hscale reads "
            f"({SCHEMA_VERSION}); `hscale analyze` fits schema 1 files"
        )
    else:
        raise RecordError(
            f"{source}: schema_version {version!r} is not one this hscale reads ({SCHEMA_VERSION})"
        )
    try:
        check(data, shape, "summary")
    except RecordError as exc:
        raise RecordError(f"{source}: {exc}") from None
    return data


def read_summary(run_dir: Path, oldest: int = SCHEMA_VERSION) -> dict:
    """A run directory's summary.json, parsed and validated (validate)."""
    file = run_dir / "summary.json"
    try:
        text = file.read_text("utf-8")
    except FileNotFoundError:
        raise RecordError(f"{run_dir} is not a run directory (no summary.json)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{file}: cannot be read ({exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        where = "it is empty" if not text.strip() else str(exc)
        raise RecordError(f"{file}: not JSON ({where}); a run killed while writing?") from None
    return validate(data, str(file), oldest)


def read_manifest(run_dir: Path) -> dict:
    """manifest.json, or {} when it is missing or unreadable: it is provenance only."""
    try:
        data = json.loads((run_dir / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
