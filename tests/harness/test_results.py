"""hscale.results: a new directory per run, atomic JSON, the `latest` link, schema checks."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest

from hscale.results import SCHEMA_VERSION, RunDir, load_summary, new_run_id, write_json


def summary(run_id: str, status: str = "running", **extra) -> dict:
    """The least a valid run record holds (analysis/record.py)."""
    return {"run_id": run_id, "status": status, "trials": [], "points": [], **extra}


def point(n: int, **extra) -> dict:
    """A point with the fields a run record requires of one."""
    return {
        "replicas": n, "trials": 1, "throughput_rps": 1.0, "throughput_trials": [1.0],
        "latency_ms": {}, "valid": True, "notes": [], **extra,
    }  # fmt: skip


def test_run_dir_layout(tmp_path):
    root = tmp_path / "results"  # created on demand
    rd = RunDir(root, "run-a")
    assert rd.path == root / "run-a"
    assert (rd.path / "points").is_dir() and (rd.path / "runtime").is_dir()
    assert rd.trial_dir(3, 2) == rd.path / "points" / "n3" / "t2"
    assert rd.trial_dir(3, 2, attempt=1) == rd.path / "points" / "n3" / "t2.1"


def test_same_run_id_twice_raises_and_keeps_the_first(tmp_path):
    rd = RunDir(tmp_path, "run-a")
    rd.write_summary(summary("run-a", "complete"))
    before = (rd.path / "summary.json").read_bytes()
    with pytest.raises(FileExistsError):
        RunDir(tmp_path, "run-a")
    assert (rd.path / "summary.json").read_bytes() == before


def test_existing_empty_dir_is_not_reused_either(tmp_path):
    (tmp_path / "run-b").mkdir()
    with pytest.raises(FileExistsError):
        RunDir(tmp_path, "run-b")


def test_run_ids_are_unique_and_time_sortable():
    ids = [new_run_id("json") for _ in range(200)]
    assert len(set(ids)) == len(ids)
    for run_id in ids:
        assert re.fullmatch(r"\d{8}-\d{6}-json-[0-9a-f]{6}", run_id), run_id
    stamps = [i[:15] for i in ids]
    assert stamps == sorted(stamps)


def test_write_summary_adds_schema_version_first(tmp_path):
    rd = RunDir(tmp_path, "run-a")
    rd.write_summary(summary("run-a", "complete", points=[point(1)]))
    raw = (rd.path / "summary.json").read_text()
    data = json.loads(raw)
    assert data["schema_version"] == SCHEMA_VERSION == 2
    assert next(iter(data)) == "schema_version"
    assert data["points"] == [point(1)]
    assert load_summary(rd.path) == data
    assert [p.name for p in rd.path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_write_summary_rejects_unknown_status(tmp_path):
    rd = RunDir(tmp_path, "run-a")
    with pytest.raises(AssertionError):
        rd.write_summary(summary("run-a", "done"))
    assert not (rd.path / "summary.json").exists()


def test_write_summary_is_atomic_for_a_concurrent_reader(tmp_path):
    """A reader polling summary.json (as `hscale show` or a test may) never sees half a
    file: every read parses, while the writer keeps replacing it with large payloads."""
    rd = RunDir(tmp_path, "run-a")
    rd.write_summary(summary("run-a"))
    stop = threading.Event()
    bad: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                text = (rd.path / "summary.json").read_text()
            except FileNotFoundError:  # never expected: os.replace swaps in place
                bad.append("missing")
                continue
            try:
                json.loads(text)
            except ValueError:
                bad.append(text[-80:])
            reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            points = [point(n, pad="x" * 2000, i=i) for n in range(1, 30)]
            rd.write_summary(summary("run-a", points=points))
    finally:
        stop.set()
        thread.join()
    assert reads > 0
    assert bad == []
    assert load_summary(rd.path)["points"][0]["i"] == 299


def test_write_json_replaces_via_temp_file(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("old")
    inode = target.stat().st_ino
    write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert target.stat().st_ino != inode  # a new file renamed over, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_latest_symlink_switches(tmp_path):
    first, second = RunDir(tmp_path, "run-1"), RunDir(tmp_path, "run-2")
    first.point_to_latest()
    latest = tmp_path / "latest"
    assert latest.is_symlink() and os.readlink(latest) == "run-1"  # relative: survives moves
    assert latest.resolve() == first.path.resolve()
    second.point_to_latest()
    assert os.readlink(latest) == "run-2"
    assert latest.resolve() == second.path.resolve()
    assert first.path.is_dir()  # the old run is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "run-1", "run-2"]


def test_latest_replaces_a_dangling_link(tmp_path):
    (tmp_path / "latest").symlink_to("deleted-run")
    rd = RunDir(tmp_path, "run-1")
    rd.point_to_latest()
    assert os.readlink(tmp_path / "latest") == "run-1"


@pytest.mark.parametrize("version", [0, 1, 3, "2", None])
def test_load_summary_rejects_other_schema_versions(tmp_path, version):
    run = tmp_path / "run"
    run.mkdir()
    payload = summary("run")
    if version is not None:
        payload["schema_version"] = version
    (run / "summary.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="schema_version"):
        load_summary(run)


def test_load_summary_reads_what_write_summary_wrote(tmp_path: Path):
    rd = RunDir(tmp_path, "run-a")
    rd.write_summary(summary("run-a", "interrupted", error="interrupted (SIGINT)"))
    got = load_summary(rd.path)
    assert got["status"] == "interrupted" and got["error"] == "interrupted (SIGINT)"


def test_write_json_never_writes_nan_or_infinity(tmp_path) -> None:
    import json as json_

    from hscale.results import write_json

    write_json(
        tmp_path / "x.json",
        {"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}},
    )
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json_.loads(text) == {"a": None, "b": [None, 1.5], "c": {"d": None}}
