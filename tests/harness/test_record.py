"""The run record (analysis/record.py): one loader, one-line errors for any corrupt file."""

from __future__ import annotations

import json
import re
import subprocess
import typing
from pathlib import Path

import pytest
from hscale_testkit import hscale_cmd, hscale_env
from report_fixtures import make_run

from hscale.analysis import record
from hscale.analysis.record import RecordError, read_summary

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"))


def corrupt(run: Path, tmp: Path, change) -> Path:
    """A copy of run's summary.json, changed by change(summary) (or replaced by a str)."""
    out = tmp / f"bad-{len(list(tmp.iterdir()))}"
    out.mkdir()
    summary = json.loads((run / "summary.json").read_text())
    new = change(summary)
    text = new if isinstance(new, str) else json.dumps(summary if new is None else new)
    (out / "summary.json").write_text(text)
    return out


def test_a_real_run_validates(good: Path) -> None:
    summary = read_summary(good)
    assert summary["points"] and summary["trials"] and summary["analysis"]["model"]


CASES = [
    (lambda s: "", r"not JSON \(it is empty\)"),
    (lambda s: '{"schema_version": 2, "trials": [', r"not JSON"),
    (lambda s: [], r"is list, not a JSON object"),
    (lambda s: "null", r"is null, not a JSON object"),
    (lambda s: {**s, "schema_version": 1}, r"schema_version 1 is older"),
    (lambda s: {**s, "schema_version": 9}, r"schema_version 9 is not one"),
    (lambda s: {k: v for k, v in s.items() if k != "trials"}, r"summary has no 'trials'"),
    (lambda s: {**s, "trials": None}, r"summary.trials is null, expected list"),
    (lambda s: {**s, "status": "done"}, r"summary.status is str, expected \"running\" or"),
    (lambda s: s["trials"][0].pop("replicas") and None, r"summary.trials\[0\] has no 'replicas'"),
    (
        lambda s: s["points"][1].update(throughput_rps="fast"),
        r"summary.points\[1\].throughput_rps is str, expected number",
    ),
    (
        lambda s: s["points"][0].update(latency_ms=[]),
        r"summary.points\[0\].latency_ms is list, expected object",
    ),
    (lambda s: s["analysis"].pop("lambda") and None, r"summary.analysis has no 'lambda'"),
    (lambda s: s["trials"][2].update(valid="yes"), r"summary.trials\[2\].valid is str"),
]


@pytest.mark.parametrize(("change", "message"), CASES)
def test_corrupt_summaries_give_one_line_naming_file_and_field(
    good: Path, tmp_path: Path, change, message: str
) -> None:
    bad = corrupt(good, tmp_path, change)
    with pytest.raises(RecordError, match=message) as exc:
        read_summary(bad)
    assert "\n" not in str(exc.value) and str(bad) in str(exc.value)


def test_schema_1_is_read_only_where_asked() -> None:
    v1 = {"schema_version": 1, "points": [{"replicas": 1, "throughput_rps": 10.0}]}
    assert record.validate(v1, "x", oldest=1) is v1
    with pytest.raises(RecordError, match="older"):
        record.validate(v1, "x")
    with pytest.raises(RecordError, match=r"points\[0\] has no 'replicas'"):
        record.validate({"schema_version": 1, "points": [{}]}, "x", oldest=1)


def test_no_summary_is_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="is not a run directory"):
        read_summary(tmp_path)
    assert record.read_manifest(tmp_path) == {}


@pytest.mark.parametrize("command", ["show", "report", "analyze", "plot"])
def test_every_reader_turns_a_corrupt_summary_into_exit_2_and_one_line(
    good: Path, tmp_path: Path, command: str
) -> None:
    bad = corrupt(good, tmp_path, lambda s: {**s, "points": None})
    done = subprocess.run(
        [*hscale_cmd(), command, str(bad)],
        capture_output=True, text=True, env=hscale_env(tmp_path), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "summary.points is null, expected list" in lines[0]
    assert "Traceback" not in done.stderr


def test_compare_names_the_corrupt_run(good: Path, tmp_path: Path) -> None:
    bad = corrupt(good, tmp_path, lambda s: s["trials"][0].update(trial=None))
    done = subprocess.run(
        [*hscale_cmd(), "compare", str(good), str(bad), "--out", str(tmp_path / "cmp")],
        capture_output=True, text=True, env=hscale_env(tmp_path), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "summary.trials[0].trial is null" in done.stderr


def _documented_fields() -> set[str]:
    """Backticked names in the results reference and the pages it points to."""
    pages = [ROOT / "results" / "README.md", ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    return {f for page in pages for f in re.findall(r"`([a-z_0-9]+)`", page.read_text())}


@pytest.mark.parametrize("shape", [record.Summary, record.Trial, record.Point, record.Analysis])
def test_every_typed_field_is_documented(shape: type) -> None:
    documented = _documented_fields()
    fields = set(typing.get_type_hints(shape)) | set(record._EXTRA.get(shape, {}))
    missing = sorted(fields - documented)
    assert not missing, f"{shape.__name__} fields not in results/README.md: {missing}"
