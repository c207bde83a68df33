"""report.html and compare.html in a real browser: headless Chromium opens the file.

The page's own tiny script writes, on load, how many images decoded ("<loaded>/<total>",
naturalWidth > 0) into <body data-figures> and every error event into <body data-errors>;
Chromium's --dump-dom gives back the DOM after load, and with --enable-logging=stderr it
prints every console message as a CONSOLE line. A second run takes a screenshot for a human.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from report_fixtures import RunSpec, assert_png, make_run, memory_like, redis_like

from hscale.analysis import compare_files, report, report_files

pytestmark = pytest.mark.e2e
REPORT_IMAGES = len(report.CAPTIONS)  # one caption per figure of a run's report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT_S = 90
CONSOLE = re.compile(r":CONSOLE[(:]")


@dataclass
class Loaded:
    figures: str  # "<loaded>/<total>", or "pending" if the load event never came
    errors: str
    console: list[str]


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/install-system-packages installs it)")
    argv = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
        "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0",
        *args, page.resolve().as_uri(),
    ]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def open_page(page: Path, tmp: Path) -> Loaded:
    done = chromium(page, tmp / "profile", "--dump-dom")
    body = re.search(r"<body([^>]*)>", done.stdout)
    assert body, f"no <body> in the dumped DOM:\n{done.stdout[:2000]}"
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', body.group(1)))
    console = [line for line in done.stderr.splitlines() if CONSOLE.search(line)]
    return Loaded(attrs.get("figures", ""), attrs.get("errors", ""), console)


def screenshot(page: Path, tmp: Path) -> Path:
    shot = tmp / f"{page.stem}.png"
    chromium(page, tmp / "profile", f"--screenshot={shot}", "--window-size=1280,4000")
    assert_png(shot.read_bytes())
    return shot


def assert_clean(loaded: Loaded, images: int) -> None:
    assert loaded.figures == f"{images}/{images}", f"images loaded: {loaded.figures}"
    assert loaded.errors == "", loaded.errors
    assert loaded.console == [], "\n".join(loaded.console)


def test_report_loads_every_figure_without_errors(tmp_path: Path):
    page = report_files.write_report(make_run(tmp_path / "results"))
    assert_clean(open_page(page, tmp_path), images=REPORT_IMAGES)
    screenshot(page, tmp_path)


def test_report_without_a_fit_loads(tmp_path: Path):
    page = report_files.write_report(make_run(tmp_path / "results", RunSpec(ns=(1,), invalid=None)))
    assert_clean(open_page(page, tmp_path), images=REPORT_IMAGES)


def test_compare_page_loads_every_figure_without_errors(tmp_path: Path):
    root = tmp_path / "results"
    a = make_run(root)
    b = make_run(root, RunSpec(run_id="20250102-040000-counter-bbbbbb", lam=390.0, seed=11))
    page = compare_files.write_comparison([("A", a), ("B", b)], root / "compare-test")
    assert_clean(open_page(page, tmp_path), images=3)
    screenshot(page, tmp_path)


def test_store_comparison_and_a_wrong_store_s_report_load(tmp_path: Path):
    """The pages with the consistency section, its banner and the ranking paragraph."""
    root = tmp_path / "results"
    redis, memory = make_run(root, redis_like()), make_run(root, memory_like())
    wrong = report_files.write_report(memory)
    assert_clean(open_page(wrong, tmp_path), images=REPORT_IMAGES)
    page = compare_files.write_comparison(
        [("redis", redis), ("memory", memory)], root / "comparison"
    )
    assert_clean(open_page(page, tmp_path), images=3)
    dom = chromium(page, tmp_path / "profile", "--dump-dom").stdout
    assert 'id="ranking"' in dom and "memory is the fastest but wrong" in dom
    screenshot(page, tmp_path)


def test_the_check_sees_a_broken_figure_and_a_script_error(tmp_path: Path):
    """The assertions above are real: a corrupt image and a console error are caught."""
    good = report_files.write_report(make_run(tmp_path / "results"))
    text = good.read_text()
    start = text.index("data:image/png;base64,") + len("data:image/png;base64,") + 200
    broken = tmp_path / "broken.html"
    broken.write_text(
        text[:start]
        + "!!!!"
        + text[start + 4 :]
        + "<script>console.error('boom'); missingFunction();</script>"
    )
    loaded = open_page(broken, tmp_path)
    assert loaded.figures == f"{REPORT_IMAGES - 1}/{REPORT_IMAGES}"
    assert "failed to load img throughput" in loaded.errors
    assert "missingFunction" in loaded.errors
    assert any("boom" in line for line in loaded.console)
    with pytest.raises(AssertionError):
        assert_clean(loaded, images=REPORT_IMAGES)
