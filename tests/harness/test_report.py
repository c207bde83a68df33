"""`hscale report` / analysis.report on a realistic schema-2 run built without load."""

from __future__ import annotations

import html
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from hscale_testkit import run_hscale
from markupsafe import escape
from report_fixtures import (
    INVALID_REASON,
    RunSpec,
    assert_png,
    assert_self_contained,
    assert_svg,
    embedded_png,
    make_run,
    memory_like,
    redis_like,
)

from hscale import settings
from hscale.analysis import figures, plot, report, report_files, usl

FIGURES = ("throughput", "efficiency", "karp_flatt", "latency", "cpu", "series", "run_order")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fixture run with its report written (drawing takes a few seconds: share it)."""
    path = make_run(tmp_path_factory.mktemp("results"))
    assert report_files.write_report(path) == path / "report.html"
    return path


@pytest.fixture(scope="module")
def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_every_figure_is_written_as_png_and_svg(run: Path):
    for name in FIGURES:
        assert_png((run / "figures" / f"{name}.png").read_bytes())
        assert_svg(run / "figures" / f"{name}.svg")
    # `hscale plot` and older links keep finding throughput vs N at the run's root.
    assert (run / "throughput.png").read_bytes() == (run / "figures/throughput.png").read_bytes()


def test_html_is_self_contained_and_embeds_every_figure(run: Path):
    page = assert_self_contained((run / "report.html").read_text())
    assert [img["alt"] for img in page.imgs] == list(FIGURES)
    for img in page.imgs:  # the embedded image is the figure written beside it
        assert embedded_png(img) == (run / "figures" / f"{img['alt']}.png").read_bytes()


def test_html_has_verdict_status_and_points(run: Path, summary: dict):
    text = (run / "report.html").read_text()
    page = assert_self_contained(text)
    assert str(escape(summary["analysis"]["verdict"])) in text
    assert summary["run_id"] in text and "complete" in text
    rows = page.tables["points"][1:]
    assert [int(r[0]) for r in rows] == [p["replicas"] for p in summary["points"]]
    for r, p in zip(rows, summary["points"], strict=True):
        lo, hi = p["throughput_ci"]
        assert r[2] == f"{report.num(p['throughput_rps'])} [{report.num(lo)}, {report.num(hi)}]"
        assert r[3] == report.num(p["throughput_raw_rps"])  # as measured, beside
        assert ("E > 1" in r[5]) == (p["efficiency"] > 1)  # superlinear is flagged
        assert r[-1] == ("yes" if p["valid"] else "no")


def test_validity_table_names_the_invalid_trial_and_its_reason(run: Path, summary: dict):
    rows = assert_self_contained((run / "report.html").read_text()).tables["validity"]
    header, rows = rows[0], rows[1:]
    assert header[:2] == ["N", "trial"]
    bad = [r for r in rows if r[4] == "no"]
    # The trial itself and the point it belongs to (a point is valid only if all trials are).
    assert [(r[0], r[1]) for r in bad] == [("4", "2"), ("4", "all")]
    assert INVALID_REASON in bad[0][5]
    assert len([r for r in rows if r[1] != "all"]) == len(summary["trials"])
    assert any("superlinear" in r[6] for r in rows if r[0] == "2")  # warnings shown too


def test_model_table_and_fit_notes(run: Path, summary: dict):
    a = summary["analysis"]
    page = assert_self_contained((run / "report.html").read_text())
    rows = {r[0]: r for r in page.tables["models"][1:]}
    assert set(rows) == {"linear", "amdahl", "usl"}
    assert [name for name, r in rows.items() if r[-1] == "chosen"] == [a["model"]]
    assert rows["linear"][2] == "0 (fixed)" and rows["amdahl"][3] == "0 (fixed)"
    lo, hi = a["models"]["usl"]["ci"]["kappa"]
    assert rows["usl"][3].endswith(f"[{report.num(lo)}, {report.num(hi)}]")
    fit = dict(page.tables["fit"])
    assert fit["weak fit"] == a["weak_fit"]
    assert fit["peak extrapolated"].startswith("yes" if a["peak_extrapolated"] else "no")


def test_manifest_table_lists_versions_host_and_config(run: Path):
    page = assert_self_contained((run / "report.html").read_text())
    cells = {r[0]: r[1] for r in page.tables["manifest"] if len(r) == 2}
    assert cells["cpu_model"] == "Test CPU @ 2.40GHz"
    assert cells["locust"] == "2.43.1"
    assert cells["replica_cpus"] == "0.2"
    assert cells["sweep"] == "[1, 2, 3, 4]"


def test_markdown_summary(run: Path, summary: dict):
    md = (run / "report.md").read_text()
    assert summary["analysis"]["verdict"] in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == len(summary["points"])
    for line, p in zip(rows, summary["points"], strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == str(p["replicas"]) and cells[1] == str(p["trials"])
        assert cells[2].startswith(report.num(p["throughput_rps"]) + " [")
        assert cells[3] == report.num(p["throughput_raw_rps"])
        assert ("E > 1" in cells[4]) == (p["efficiency"] > 1)
        assert cells[-1] == ("yes" if p["valid"] else "**no**")
    assert f"Model: {summary['analysis']['model']}" in md
    assert "Test CPU @ 2.40GHz" in md
    links = re.findall(r"\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(f"figures/{n}.png" for n in FIGURES)
    assert all((run / link).is_file() for link in links)


def test_reproduce_command_gives_the_same_settings(run: Path):
    manifest = json.loads((run / "manifest.json").read_text())
    md = (run / "report.md").read_text()
    command = next(line for line in md.splitlines() if line.startswith("Reproduce:"))
    words = shlex.split(command.split("`")[1])
    assert words[:2] == ["make", "bench"]
    # What `make bench` hands to `hscale bench --set NAME=VALUE`: the same knobs come out.
    s = settings.load(dict(w.split("=", 1) for w in words[2:]), host_cpus=2)
    cfg = manifest["config"]
    assert list(s.sweep) == cfg["sweep"] and s.scenario == cfg["scenario"]
    for key in ("trials", "duration", "warmup", "replica_cpus", "workers", "threads", "ballast"):
        assert getattr(s, key) == cfg[key], key


def test_fitted_curve_and_band_belong_to_the_recorded_fit(summary: dict):
    a = summary["analysis"]
    name, xs, ys, band = figures.model_curve(summary, 4.5)
    assert name == a["model"]
    params = a["models"][name]["params"]
    assert ys == pytest.approx(
        usl.throughput(xs, params["lambda"], params["sigma"], params["kappa"])
    )
    assert band is not None
    lo, hi = band
    assert np.all(lo <= ys + 1e-9) and np.all(ys <= hi + 1e-9) and np.any(hi - lo > 1)


def test_band_is_left_out_when_it_would_belong_to_another_fit(summary: dict):
    other = json.loads(json.dumps(summary))
    other["analysis"]["models"][other["analysis"]["model"]]["params"]["lambda"] *= 1.2
    assert figures.model_curve(other, 4.5)[3] is None


def test_report_without_a_fit(tmp_path: Path):
    run = make_run(tmp_path, RunSpec(ns=(2,), invalid=None))
    page = assert_self_contained(report_files.write_report(run).read_text())
    assert len(page.imgs) == len(FIGURES)
    assert "No scaling fit" in (run / "report.html").read_text()
    assert "No scaling fit" in (run / "report.md").read_text()
    assert "No verdict" in (run / "report.md").read_text()


def test_missing_raw_tallies_still_give_a_report(tmp_path: Path):
    run = make_run(tmp_path, RunSpec(trials=2))
    for tally in run.glob("points/*/t1/tally.json"):
        tally.unlink()
    # The series in summary.json stands in for a lost tally...
    _, _, series = report_files.load_run(run)
    assert sorted(series) == [(n, k) for n in (1, 2, 3, 4) for k in (1, 2)]
    # ... and without either, that trial is left out of the figure.
    summary = json.loads((run / "summary.json").read_text())
    for t in summary["trials"]:
        if t["trial"] == 1:
            del t["series"]
    (run / "summary.json").write_text(json.dumps(summary))
    _, _, series = report_files.load_run(run)
    assert sorted(series) == [(n, 2) for n in (1, 2, 3, 4)]
    assert_self_contained(report_files.write_report(run).read_text())


def test_text_from_the_run_is_escaped(tmp_path: Path):
    error = "<script>alert('x')</script> & more"
    run = make_run(tmp_path, RunSpec(status="failed", extra={"error": error}))
    text = report_files.write_report(run).read_text()
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in text


def test_cli_report_regenerates_into_the_run(tmp_path: Path):
    run = make_run(tmp_path)
    done = run_hscale(["report", str(run)])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(run.resolve() / "report.html")
    assert (run / "report.md").is_file() and (run / "figures/cpu.svg").is_file()


@pytest.mark.parametrize("case", ["not-a-run", "schema-1"])
def test_cli_report_bad_input_is_one_line_exit_2(tmp_path: Path, case: str):
    run = tmp_path / "x"
    run.mkdir()
    if case == "schema-1":
        (run / "summary.json").write_text(json.dumps({"schema_version": 1, "points": []}))
    done = run_hscale(["report", str(run)])
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("hscale: error: ")
    assert not (run / "report.html").exists()


def test_failed_fit_and_retried_trials_are_reported(tmp_path: Path):
    retried = {"replicas": 4, "trial": 2, "raw": "points/n4/t2", "notes": ["loadgen busy"]}
    extra = {"analysis": None, "analysis_error": "fit exploded", "retried_trials": [retried]}
    run = make_run(tmp_path, RunSpec(extra=extra))
    text = report_files.write_report(run).read_text()
    assert "the scaling fit failed (fit exploded)" in text
    assert "N = 4 trial 2 (points/n4/t2): loadgen busy" in text
    assert "No scaling fit: fit exploded." in (run / "report.md").read_text()


def test_plot_redraws_throughput_png(run: Path, summary: dict, tmp_path: Path):
    manifest = json.loads((run / "manifest.json").read_text())
    out = plot.throughput_plot(summary, manifest, tmp_path / "throughput.png")
    assert_png(out.read_bytes())


def test_a_run_that_failed_before_any_trial_still_gets_a_report(tmp_path: Path):
    extra = {"trials": [], "points": [], "error": "StartupError: nginx did not start"}
    run = make_run(tmp_path, RunSpec(status="failed", extra=extra))
    page = assert_self_contained(report_files.write_report(run).read_text())
    assert len(page.imgs) == len(FIGURES)  # placeholders saying there is nothing to draw
    assert "nginx did not start" in (run / "report.md").read_text()


# -- consistency ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A shared (redis-like) and a per-process (memory-like) run, with their reports."""
    root = tmp_path_factory.mktemp("results")
    runs = {"redis": make_run(root, redis_like()), "memory": make_run(root, memory_like())}
    for path in runs.values():
        report_files.write_report(path)
    return runs


def raw_counts(run: Path) -> dict[tuple[int, int], dict]:
    """What the listener counted per (N, trial), from the raw tallies, not the summary."""
    summary = json.loads((run / "summary.json").read_text())
    return {
        (t["replicas"], t["trial"]): json.loads((run / t["raw"] / "tally.json").read_text())[
            "consistency"
        ]
        for t in summary["trials"]
    }


def test_consistent_run_says_so_with_its_numbers(checked: dict[str, Path]):
    run = checked["redis"]
    summary = json.loads((run / "summary.json").read_text())
    counts = raw_counts(run)
    acked = sum(c["counter"]["acknowledged"] for c in counts.values())
    sent = sum(c["counter"]["attempts"] for c in counts.values())
    text = (run / "report.html").read_text()
    page = assert_self_contained(text)
    assert "consistency-banner" not in text
    line = f"Consistent in all 12 trial(s): the counter rose by {acked + 2 * 12:,} with "
    assert line + f"{acked:,} of {sent:,} increments acknowledged" in text
    kv_reads = sum(c["kv"]["reads"] for c in counts.values())
    assert f"kv: none of {kv_reads:,} reads of own writes missing or stale" in text
    header, *rows = page.tables["consistency-trials"]
    assert header[:3] == ["N", "trial", "consistent"] and "session stale" in header
    assert len(rows) == len(summary["trials"])
    delta = header.index("delta")
    for row in rows:
        c = counts[(int(row[0]), int(row[1]))]["counter"]
        assert row[2] == "yes" and row[delta + 1 : delta + 3] == ["yes", "yes"]
        assert row[delta] == f"{c['acknowledged'] + 2:,}"  # the fixture lands 2 unacknowledged
    assert "Consistent in all 12 trial(s)" in (run / "report.md").read_text()


def test_memory_run_is_shown_wrong_with_the_numbers(checked: dict[str, Path]):
    run = checked["memory"]
    counts = raw_counts(run)
    wrong = {key: c for key, c in counts.items() if key[0] > 1}
    stale = sum(c["session"]["stale"] for c in counts.values())
    reads = sum(c["session"]["reads"] for c in counts.values())
    sessions = f"session: {stale:,} of {reads:,} reads after the user's own write stale"
    diverge = f"counters diverge across replicas in {len(wrong)} of {len(counts)} trials"
    raw = (run / "report.html").read_text()
    page = assert_self_contained(raw)
    text = html.unescape(raw)  # the page escapes the apostrophes of "user's"
    banner = re.search(r'<p class="banner" id="consistency-banner">(.*?)</p>', text, re.S)
    assert banner and diverge in banner.group(1) and sessions in banner.group(1)
    verdict = re.search(r'<p id="consistency-verdict" class="flag">(.*?)</p>', text, re.S)
    assert verdict and verdict.group(1).startswith(f"Not consistent in {len(wrong)} of 12")
    header, *rows = page.tables["consistency-trials"]
    agree, session_stale = header.index("replicas agree (delta by replica)"), -1
    assert header[session_stale] == "session stale"
    summary = json.loads((run / "summary.json").read_text())
    for row in rows:
        n, k = int(row[0]), int(row[1])
        if n == 1:  # one replica cannot disagree with itself: memory is right at N = 1
            assert row[2] == "yes" and row[agree] == "yes" and row[session_stale] == "0"
            continue
        assert row[2] == "no"
        # what each replica counted: the fixture's uneven split of the acknowledged ones
        trial = next(t for t in summary["trials"] if (t["replicas"], t["trial"]) == (n, k))
        by_replica = trial["consistency"]["counter"]["by_replica_after"]
        assert sum(by_replica.values()) == pytest.approx(
            counts[(n, k)]["counter"]["acknowledged"], abs=n
        )
        assert row[agree] == "no: " + ", ".join(f"{r} +{v:,}" for r, v in by_replica.items())
        s = counts[(n, k)]["session"]
        assert row[session_stale].startswith(f"{s['stale']:,} (") and s["stale"] > 0
    md = (run / "report.md").read_text()
    top = md.split("| N |")[0]  # before the points table: wrong results come first
    assert f"**Not consistent in {len(wrong)} of 12 trial(s): {diverge}" in top
    assert sessions in md and "| **no** |" in md


@pytest.mark.parametrize("absent", ["missing", "null"])
def test_runs_without_a_consistency_check_say_not_checked(tmp_path: Path, absent: str):
    extra = {"consistency": None} if absent == "null" else {}
    run = make_run(tmp_path, RunSpec(trials=2, extra=extra))
    assert ("consistency" in json.loads((run / "summary.json").read_text())) == (absent == "null")
    text = report_files.write_report(run).read_text()
    page = assert_self_contained(text)
    assert "consistency-trials" not in page.tables and "consistency-banner" not in text
    assert re.search(r'<p id="consistency-verdict" class="">Not checked: ', text)
    assert "\nNot checked: " in (run / "report.md").read_text()


def test_consistency_line_when_nothing_was_checked():
    assert report.consistency_line({"trials": 0, "inconsistent_trials": 0}).startswith(
        "Not checked yet"
    )
    idle = {"trials": 3, "inconsistent_trials": 0, "consistent": True, "problems": []}
    assert report.consistency_ok(idle) is None
    assert report.consistency_line(idle).startswith("Nothing to check in 3 trial(s)")
