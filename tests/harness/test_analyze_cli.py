"""`hscale analyze` on a published dataset, bad input and old run directories; the CSV
reader and the Analysis object it feeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hscale_testkit import run_hscale, usage_error_line

from hscale.analysis.analyze import analyze, measurements_from_csv, measurements_from_summary
from hscale.analysis.verdict import verdict

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
REQUIRED = (
    "sigma",
    "kappa",
    "lambda",
    "sigma_ci",
    "kappa_ci",
    "r_squared",
    "peak_n",
    "peak_throughput",
    "efficiency",
    "verdict",
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hscale.cli", "analyze", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_usage_error(done: subprocess.CompletedProcess[str], needle: str) -> None:
    line = usage_error_line(done)
    assert needle in line, line


def test_json_on_the_cisco_dataset() -> None:
    done = run(str(DATA / "usl_cisco.csv"), "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1  # exactly one JSON object on one line
    out = json.loads(done.stdout)
    assert set(REQUIRED) <= out.keys()
    assert out["source"] == str(DATA / "usl_cisco.csv")
    assert out["model"] == "usl"
    # The book's coefficients (tests/data/README.md), through the whole CLI path.
    assert out["sigma"] == pytest.approx(0.02671591, rel=1e-5)
    assert out["kappa"] == pytest.approx(7.690945e-4, rel=1e-5)
    assert out["lambda"] == pytest.approx(995.6486, rel=1e-5)
    assert out["sigma_ci"][0] < out["sigma"] < out["sigma_ci"][1]
    assert out["kappa_ci"][0] > 0  # what made the USL the supported model
    assert 35 < out["peak_n"] < 36 and out["peak_extrapolated"] is True
    assert out["efficiency"]["1"] == 1.0 and len(out["efficiency"]) == 32
    assert out["efficiency_ci"]["2"] is None  # one trial per N: no CI
    assert out["linear_up_to"] is None
    assert "coherency-bound" in out["verdict"] and "35.6" in out["verdict"]


def test_text_on_the_specsdm91_dataset() -> None:
    done = run(str(DATA / "usl_specsdm91.csv"))
    assert done.returncode == 0, done.stderr
    assert "usl" in done.stdout and "0.02773" in done.stdout  # R's sigma, 4 digits
    assert "N* = 96.5" in done.stdout
    assert "efficiency" in done.stdout and "Karp-Flatt" in done.stdout


def test_bad_csv_is_a_one_line_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("n,throughput\n1,100\n2,lots\n")
    assert_usage_error(run(str(bad)), "row 3: throughput is not a number")
    bad.write_text("replicas,throughput\n1,100\n")
    assert_usage_error(run(str(bad), "--json"), "lacks column n")
    bad.write_text("n,throughput\n2,100\n2,110\n")
    assert_usage_error(run(str(bad)), "2 or more distinct replica counts")


def test_missing_path_is_a_one_line_usage_error(tmp_path: Path) -> None:
    assert_usage_error(run(str(tmp_path / "nope")), "no such run directory or CSV file")
    assert_usage_error(run(str(tmp_path)), "no summary.json")


def test_schema_1_run_directory(tmp_path: Path) -> None:
    """Older runs: one point per N, throughput_rps, valid and notes, no trials."""
    xs = {1: 250.0, 2: 480.0, 3: 690.0, 4: 700.0}
    summary = {
        "schema_version": 1,
        "status": "complete",
        "points": [
            {
                "replicas": n,
                "throughput_rps": x,
                "valid": n != 4,
                "notes": ["oversubscribed: 4 x 0.5 CPU + 1 reserved on 2 CPUs"] if n == 4 else [],
            }
            for n, x in xs.items()
        ],
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    done = run(str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["n_points"] == 4 and out["distinct_n"] == 4
    assert out["efficiency"]["2"] == pytest.approx(480 / 500)
    assert out["invalid"] == {"4": ["oversubscribed: 4 x 0.5 CPU + 1 reserved on 2 CPUs"]}
    assert "N = 4 is invalid" in out["verdict"] and "oversubscribed" in out["verdict"]
    assert "weak" in out["verdict"]  # 4 distinct N
    text = run(str(tmp_path))
    assert text.returncode == 0 and out["verdict"] in text.stdout


def test_schema_2_trials_points_and_superlinear_flag() -> None:
    trials = [(1, 200.0), (1, 204.0), (1, 196.0), (2, 470.0), (2, 480.0), (2, 476.0)]
    trials += [(3, 585.0), (3, 600.0), (3, 592.0), (4, 760.0), (4, 780.0), (4, 770.0)]
    summary = {
        "schema_version": 2,
        "trials": [
            {"replicas": n, "trial": i % 3 + 1, "throughput_rps": x}
            for i, (n, x) in enumerate(trials)
        ],
    }
    points = [
        {"replicas": 1, "valid": True},
        {"replicas": 2, "valid": True},
        {
            "replicas": 4,
            "valid": True,
            "bottleneck": {"component": "nginx", "kind": "proxy", "util_of_budget": 0.97},
        },
    ]
    m = measurements_from_summary(summary)
    assert m[:2] == [(1, 1, 200.0), (1, 2, 204.0)]
    out = analyze(m, points)
    json.dumps(out, allow_nan=False)
    lo, hi = out["efficiency_ci"]["2"]
    assert lo > 1.05  # E(2) = 1.19, superlinear with confidence ...
    assert "Efficiency above 1.05" in out["verdict"]  # ... and flagged, not hidden
    assert out["efficiency_ci"]["4"][0] > 0.9  # E(4) = 0.96
    assert out["linear_up_to"] == 4
    assert "scales linearly up to N = 4" in out["verdict"]
    assert "Beyond the measured N it would be contention-bound" in out["verdict"]
    assert out["bottlenecks"] == {"4": "nginx"}
    assert "bottleneck at N = 4 is nginx at 97% of one core" in out["verdict"]


def test_csv_columns_any_order_case_extra_and_trial() -> None:
    text = (
        "# exported from elsewhere\nNote,Throughput,N,trial\na,100,1,1\nb,95.5,1,2\n\nc,190,2,1\n"
    )
    assert measurements_from_csv(text) == [(1, 1, 100.0), (1, 2, 95.5), (2, 1, 190.0)]
    assert measurements_from_csv("n,throughput\n1,1\n1,2\n2,3\n") == [
        (1, 1, 1.0),
        (1, 2, 2.0),
        (2, 1, 3.0),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("n,throughput\n", "no data rows"),
        ("n\n1\n", "lacks column throughput"),
        ("n,throughput\n0,10\n", "row 2: n must be at least 1"),
        ("n,throughput\n1.5,10\n", "row 2: n must be a whole number"),
        ("n,throughput\n1,-3\n", "row 2: throughput must not be negative"),
        ("n,throughput\n1,10\n2\n", "row 3: 1 cells"),
        ("n,throughput\n1,nan\n", "row 2: throughput is not a finite number"),
    ],
)
def test_csv_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        measurements_from_csv(text)


def test_summary_of_unknown_schema_is_rejected() -> None:
    with pytest.raises(ValueError, match="schema_version 3"):
        measurements_from_summary({"schema_version": 3})


def test_retrograde_data_with_few_points_is_not_called_linear() -> None:
    """6 trials at 3 N, clearly retrograde: throughput falls 21% from N = 2 to N = 3,
    far beyond the spread of the repeats, so the USL, the only model that can fall, is
    chosen, and the verdict must not claim the data are linear."""
    m = [(1, 1, 100.0), (1, 2, 101.0), (2, 1, 150.0), (2, 2, 152.0), (3, 1, 120.0), (3, 2, 118.0)]
    out = analyze(m)
    assert out["model"] == "usl"
    assert out["decline"]["from_n"] == 2 and out["decline"]["to_n"] == 3
    assert out["efficiency_ci"]["2"][1] < 0.9
    assert "coherency-bound" in out["verdict"]
    assert "no contention or coherency cost" not in out["verdict"]


def test_json_on_the_specsdm91_dataset_reports_the_usl_and_its_peak() -> None:
    """Gunther's SPEC SDM91 data rise to 1853 at N = 72 and fall 8% by N = 216: Amdahl
    (lambda 146 per replica against a measured 64.9) must not be reported."""
    done = run(str(DATA / "usl_specsdm91.csv"), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["model"] == "usl"
    assert out["selection"]["by"] == "F test" and out["selection"]["against"] == "amdahl"
    assert out["selection"]["p"] == pytest.approx(0.018, abs=1e-3)
    assert out["models"]["usl"]["selection"]["df"] == [1, 4]
    assert out["models"]["amdahl"]["selection"]["accepted"] is True
    assert out["models"]["linear"]["selection"] is None
    assert out["sigma"] == pytest.approx(2.773e-02, rel=1e-3)  # R's usl, as test_usl.py
    assert out["peak_n"] == pytest.approx(96.5, abs=0.05) and out["peak_extrapolated"] is False
    assert out["usl_peak_n"] == out["peak_n"]
    assert out["measured_max"] == {"n": 72, "throughput": pytest.approx(1853.2)}
    assert out["measured_base"] == {"n": 1, "per_replica": pytest.approx(64.9)}
    v = out["verdict"]
    assert "coherency-bound" in v and "F test, p = 0.018" in v and "N* = 96.5" in v
    assert "1,853 at N = 72" in v
    assert "caps throughput" not in v and "tentative" not in v


@pytest.mark.parametrize("name", ["usl_cisco", "usl_raytracer", "usl_specsdm91"])
def test_headline_values_are_those_of_the_chosen_model(name: str) -> None:
    rows = measurements_from_csv((DATA / f"{name}.csv").read_text())
    out = analyze(rows)
    chosen = out["models"][out["model"]]
    for key in ("sigma", "kappa", "lambda"):
        assert out[key] == chosen["params"][key], key
        assert out[f"{key}_ci"] == chosen["ci"].get(key), key
    assert out["r_squared"] == chosen["r_squared"]
    if out["model"] == "usl":
        assert out["peak_n"] == out["usl_peak_n"] is not None
    else:
        assert out["peak_n"] is None and out["peak_throughput"] is None
    assert out["selection"]["model"] == out["model"]


def test_amdahl_far_from_the_measured_lambda_is_called_a_misfit() -> None:
    """The old verdict on specsdm91: Amdahl with lambda = 146 per replica where X(1) is
    64.9. Should Amdahl be chosen with such a lambda, the verdict says it misfits."""
    forced = analyze(measurements_from_csv((DATA / "usl_specsdm91.csv").read_text()))
    amdahl = forced["models"]["amdahl"]
    forced["model"], forced["peak_n"] = "amdahl", None
    forced["selection"] = {"model": "amdahl", "by": "F test", "test": "F", "against": "linear"}
    forced["selection"]["p"] = amdahl["selection"]["p"]
    forced["models"]["usl"]["selection"].update(p=0.3, accepted=False)  # as if F failed
    text = verdict(forced)
    assert "contention-bound" in text and "caps throughput" in text
    assert "2.25x the 64.9 measured per replica at N = 1" in text and "misfit" in text
    assert "F test, p < 0.0001" in text
    assert "N* = 96.5" in text and "tentative" in text and "p = 0.3" in text
    raytracer = analyze(measurements_from_csv((DATA / "usl_raytracer.csv").read_text()))
    assert raytracer["model"] == "amdahl" and "misfit" not in raytracer["verdict"]  # 21.8 vs 20


def test_verdict_survives_missing_fields() -> None:
    assert isinstance(verdict({}, None), str)
    out = analyze([(1, 1, 100.0), (1, 2, 98.0), (2, 1, 190.0), (2, 2, 195.0)])
    text = verdict(out, [{}, {"replicas": 2}, {"replicas": 1, "valid": False}])
    assert "Point N = 1 is invalid" in text and "no reason recorded" in text


def test_a_repeated_trial_row_is_refused_not_counted_twice(tmp_path) -> None:
    csv = tmp_path / "dup.csv"
    csv.write_text("n,trial,throughput\n1,1,100\n2,1,190\n2,1,190\n")
    done = run_hscale(["analyze", str(csv)])
    assert done.returncode == 2
    assert "row 4: n 2 trial 1 repeats row 3" in done.stderr


def test_a_huge_csv_is_refused_before_it_is_read(tmp_path) -> None:
    csv = tmp_path / "huge.csv"
    with csv.open("w") as fh:
        fh.write("n,throughput\n")
        fh.write("1,100\n" * 900_000)  # 5.4 MB
    done = run_hscale(["analyze", str(csv)])
    assert done.returncode == 2 and "at most 4,194,304" in done.stderr


def test_too_many_rows_are_refused(tmp_path) -> None:
    csv = tmp_path / "rows.csv"
    csv.write_text("n,throughput\n" + "".join(f"{1 + i % 4},{100 + i}\n" for i in range(10_001)))
    done = run_hscale(["analyze", str(csv)])
    assert done.returncode == 2 and "10,001 data rows; at most 10,000" in done.stderr
