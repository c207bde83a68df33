"""`hscale compare` / analysis.compare on fixture runs: ratios, CIs, files, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hscale_testkit import run_hscale
from report_fixtures import (
    RunSpec,
    assert_png,
    assert_self_contained,
    assert_svg,
    embedded_png,
    make_run,
)

from analysis import compare, report, stats

B_ID = "20250102-040000-counter-bbbbbb"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A and B: B's replicas are 30% faster; trials differ (another seed)."""
    root = tmp_path_factory.mktemp("results")
    return make_run(root), make_run(root, RunSpec(run_id=B_ID, lam=390.0, seed=11))


@pytest.fixture(scope="module")
def written(runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    a, b = runs
    out = tmp_path_factory.mktemp("cmp") / "compare-test"
    page = compare.write_comparison([("A", a), ("B", b)], out)
    assert page == out / "compare.html"
    return out


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_ratios_and_cis_are_those_of_analysis_stats(runs: tuple[Path, Path], written: Path):
    data = json.loads((written / "compare.json").read_text())
    a_pts = {p["replicas"]: p for p in summary(runs[0])["points"]}
    b_pts = {p["replicas"]: p for p in summary(runs[1])["points"]}
    assert data["baseline"] == "A" and [r["label"] for r in data["runs"]] == ["A", "B"]
    assert [r["n"] for r in data["ratios"]] == [1, 2, 3, 4]
    for r in data["ratios"]:
        num, den = b_pts[r["n"]]["throughput_trials"], a_pts[r["n"]]["throughput_trials"]
        assert r["label"] == "B"
        assert r["ratio"] == pytest.approx(np.mean(num) / np.mean(den))
        assert r["ci"] == pytest.approx(list(stats.ratio_ci(num, den)))
        assert r["ci"][0] < r["ratio"] < r["ci"][1]
        assert r["valid"] == (r["n"] != 4)  # both runs have an invalid trial at N = 4
    # B was simulated 30% faster: every CI says so.
    assert all(1.2 < r["ci"][0] < r["ci"][1] < 1.45 for r in data["ratios"])


def test_usl_parameters_per_run(runs: tuple[Path, Path], written: Path):
    data = json.loads((written / "compare.json").read_text())
    for run, numbers in zip(runs, data["runs"], strict=True):
        fit = summary(run)["analysis"]["models"]["usl"]
        assert numbers["usl"]["sigma"] == fit["params"]["sigma"]
        assert numbers["usl"]["kappa_ci"] == fit["ci"]["kappa"]
    md = (written / "compare.md").read_text()
    assert md.count("σ = ") == 2 and md.count("κ = ") == 2


def test_files_figures_and_self_contained_page(written: Path):
    for name in ("throughput", "ratio"):
        assert_png((written / "figures" / f"{name}.png").read_bytes())
        assert_svg(written / "figures" / f"{name}.svg")
    page = assert_self_contained((written / "compare.html").read_text())
    assert [img["alt"] for img in page.imgs] == ["throughput", "ratio"]
    for img in page.imgs:
        assert embedded_png(img) == (written / "figures" / f"{img['alt']}.png").read_bytes()
    header, *rows = page.tables["ratios"]
    assert header == ["N", "A req/s", "B req/s", "B / A"]
    data = json.loads((written / "compare.json").read_text())
    for row, r in zip(rows, data["ratios"], strict=True):
        assert row[3] == f"{r['ratio']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"


def test_never_writes_over_an_existing_directory(runs: tuple[Path, Path], written: Path):
    before = (written / "compare.json").read_bytes()
    with pytest.raises(compare.CompareError, match="exists"):
        compare.write_comparison([("A", runs[0]), ("B", runs[1])], written)
    assert (written / "compare.json").read_bytes() == before


def test_differences_between_runs_are_noted(tmp_path: Path):
    a = make_run(tmp_path)
    b = make_run(tmp_path, RunSpec(run_id=B_ID, scenario="kv", status="interrupted"))
    data = compare.comparison(compare.load_runs([("A", a), ("B", b)]))
    assert any(n.startswith("scenario differs") for n in data["notes"])
    assert "B: status interrupted" in data["notes"]


def test_runs_with_different_n_compare_where_both_measured(tmp_path: Path):
    a = make_run(tmp_path, RunSpec(ns=(1, 2)))
    b = make_run(tmp_path, RunSpec(run_id=B_ID, ns=(2, 4)))
    data = compare.comparison(compare.load_runs([("A", a), ("B", b)]))
    assert [r["n"] for r in data["ratios"]] == [2]
    header, rows = compare.table_rows(data)
    assert [r[0] for r in rows] == ["1", "2", "4"]
    assert rows[0][2] == rows[0][3] == rows[2][1] == report.MISSING


def test_cli_prints_the_ratio_table_and_writes_beside_the_first_run(runs: tuple[Path, Path]):
    a, b = runs
    done = run_hscale(["compare", str(a), str(b), "--label", f"base={a}", "--label", f"new={b}"])
    assert done.returncode == 0, done.stderr
    *table, where = done.stdout.strip().splitlines()
    page = Path(where)
    assert page.name == "compare.html" and page.parent.parent == a.parent
    assert page.parent.name.startswith("compare-")
    assert table[0].split() == ["N", "base", "req/s", "new", "req/s", "new", "/", "base"]
    data = json.loads((page.parent / "compare.json").read_text())
    for line, r in zip(table[1:], data["ratios"], strict=True):
        assert line.startswith(str(r["n"])) and line.endswith(
            f"{r['ratio']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
        )


def _bad(tmp_path: Path, runs: tuple[Path, Path], case: str) -> list[str]:
    a, b = runs
    if case == "one-run":
        return [str(a)]
    if case == "not-a-run":
        return [str(a), str(tmp_path)]
    if case == "schema":
        old = make_run(tmp_path, RunSpec(run_id="old", extra={"schema_version": 1}))
        return [str(a), str(old)]
    if case == "label-unknown":
        return [str(a), str(b), "--label", f"x={tmp_path}"]
    if case == "label-syntax":
        return [str(a), str(b), "--label", "nolabel"]
    if case == "same-label":
        return [str(a), str(b), "--label", f"x={a}", "--label", f"x={b}"]
    assert case == "out-exists"
    return [str(a), str(b), "--out", str(tmp_path)]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("one-run", "at least 2 runs"),
        ("not-a-run", "not a run directory"),
        ("schema", "schema_version 1"),
        ("label-unknown", "not one of the runs"),
        ("label-syntax", "NAME=RUN"),
        ("same-label", "share a label"),
        ("out-exists", "exists"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    tmp_path: Path, runs: tuple[Path, Path], case: str, words: str
):
    before = sorted(p.name for p in runs[0].parent.iterdir())
    done = run_hscale(["compare", *_bad(tmp_path, runs, case)])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hscale: error: "), done.stderr
    assert words in lines[0]
    assert done.stdout == ""
    assert sorted(p.name for p in runs[0].parent.iterdir()) == before  # nothing written
