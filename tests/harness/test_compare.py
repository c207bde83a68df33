"""`hscale compare` / analysis.compare on fixture runs: ratios, CIs, files, bad input."""

from __future__ import annotations

import html
import json
import re
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
    memory_like,
    redis_like,
)

from hscale.analysis import compare, compare_files, compare_render, precision, report

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
    page = compare_files.write_comparison([("A", a), ("B", b)], out)
    assert page == out / "compare.html"
    return out


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_ratios_and_cis_rest_on_each_runs_pooled_noise(runs: tuple[Path, Path], written: Path):
    data = json.loads((written / "compare.json").read_text())
    a_pts = {p["replicas"]: p for p in summary(runs[0])["points"]}
    b_pts = {p["replicas"]: p for p in summary(runs[1])["points"]}
    assert data["baseline"] == "A" and [r["label"] for r in data["runs"]] == ["A", "B"]
    assert [r["n"] for r in data["ratios"]] == [1, 2, 3, 4]
    for r in data["ratios"]:
        num, den = b_pts[r["n"]]["throughput_trials"], a_pts[r["n"]]["throughput_trials"]
        assert r["label"] == "B"
        assert r["ratio"] == pytest.approx(np.mean(num) / np.mean(den))
        noise_b, noise_a = (data["runs"][i]["noise"] for i in (1, 0))
        want = precision.welch_ratio_ci(
            r["ratio"], len(num), (noise_b["cv"], noise_b["df"]),
            len(den), (noise_a["cv"], noise_a["df"]),
        )  # fmt: skip
        assert r["ci"] == pytest.approx(list(want))
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
    for name in ("throughput", "ratio", "latency"):
        assert_png((written / "figures" / f"{name}.png").read_bytes())
        assert_svg(written / "figures" / f"{name}.svg")
    page = assert_self_contained((written / "compare.html").read_text())
    assert [img["alt"] for img in page.imgs] == ["throughput", "ratio", "latency"]
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
        compare_files.write_comparison([("A", runs[0]), ("B", runs[1])], written)
    assert (written / "compare.json").read_bytes() == before


def test_differences_between_runs_are_noted(tmp_path: Path):
    a = make_run(tmp_path)
    b = make_run(tmp_path, RunSpec(run_id=B_ID, scenario="kv", status="interrupted"))
    data = compare.comparison(compare_files.load_runs([("A", a), ("B", b)]))
    assert any(n.startswith("scenario differs") for n in data["notes"])
    assert "B: status interrupted" in data["notes"]


def test_runs_with_different_n_compare_where_both_measured(tmp_path: Path):
    a = make_run(tmp_path, RunSpec(ns=(1, 2)))
    b = make_run(tmp_path, RunSpec(run_id=B_ID, ns=(2, 4)))
    data = compare.comparison(compare_files.load_runs([("A", a), ("B", b)]))
    assert [r["n"] for r in data["ratios"]] == [2]
    header, rows = compare_render.table_rows(data)
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


# -- stores: latency, bottleneck, the store's CPU, consistency and the ranking -------------
@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path]:
    """As `make compare STORES="redis memory"` leaves it: a sub-run per store, redis the
    baseline; redis is right and its store saturates at N = 4, memory is faster and wrong."""
    cdir = tmp_path_factory.mktemp("compare-mixed")
    runs = {"redis": make_run(cdir, redis_like()), "memory": make_run(cdir, memory_like())}
    data = compare.comparison(compare_files.load_runs(list(runs.items())))
    compare_files.write_files(data, cdir / "comparison")
    return runs, cdir / "comparison"


def test_compare_json_has_latency_bottleneck_store_cpu_and_consistency(stores):
    runs, out = stores
    data = json.loads((out / "compare.json").read_text())
    assert set(data) >= {"runs", "ratios", "ranking"}
    for numbers in data["runs"]:
        s = summary(runs[numbers["label"]])
        assert numbers["linear_up_to"] == s["analysis"]["linear_up_to"]
        assert numbers["consistency"]["consistent"] is s["consistency"]["consistent"]
        assert numbers["consistency"]["problems"] == s["consistency"]["problems"]
        for mine, p in zip(numbers["points"], s["points"], strict=True):
            assert mine["latency_ms"]["p50"] == p["latency_ms"]["p50"]
            assert mine["latency_ms"]["p99"] == p["latency_ms"]["p99"]
            assert mine["bottleneck"] == p["bottleneck"]
            store = p["components"].get("store")
            if store is None:  # memory: no store process to measure
                assert mine["store_cpu"] is None
            else:  # no quota of its own: its util is against one core
                assert mine["store_cpu"]["cpu_cores"] == store["cpu_cores"]
                assert mine["store_cpu"]["util"] == pytest.approx(store["cpu_cores"], abs=1e-4)
    redis = data["runs"][0]
    assert redis["points"][-1]["store_cpu"]["util"] >= compare.SATURATED
    assert all(p["store_cpu"]["util"] < compare.SATURATED for p in redis["points"][:-1])
    assert redis["points"][-1]["bottleneck"]["component"] == "store"
    assert data["runs"][1]["consistency"]["consistent"] is False


def test_ranking_names_the_faster_store_with_ratio_and_ci_and_flags_the_wrong_one(stores):
    runs, out = stores
    data = json.loads((out / "compare.json").read_text())
    rank, text = data["ranking"], data["ranking"]["text"]
    at4 = {label: summary(path)["points"][-1]["throughput_rps"] for label, path in runs.items()}
    assert at4["memory"] > at4["redis"]  # memory really is faster ...
    assert rank["n"] == 4 and rank["order"] == ["memory", "redis"]
    assert rank["fastest"] == "memory" and rank["winner"] == "redis"  # ... but does not win
    wrong = summary(runs["memory"])["consistency"]["problems"]
    assert wrong[0].startswith("counters diverge across replicas in 9 of 12 trials; e.g.")
    assert f"memory is the fastest but wrong: {wrong[0]}" in text
    assert "Of the consistent runs, redis is the fastest." in text
    x = next(r for r in data["ratios"] if r["n"] == 4)
    lo, hi = x["ci"]
    assert x["ratio"] == pytest.approx(at4["memory"] / at4["redis"], rel=1e-3)
    assert 1 < lo < x["ratio"] < hi
    assert f"memory is {x['ratio']:.2f}x faster than redis at N = 4 [{lo:.2f}, {hi:.2f}]" in text
    k = summary(runs["redis"])["analysis"]["linear_up_to"]
    assert f"redis scales about linearly (E CI >= 0.9) up to N = {k} before its store " in text
    store = summary(runs["redis"])["points"][-1]["components"]["store"]["cpu_cores"]
    assert f"saturates at N = 4 ({store:.2f} cores, {store:.0%} of one core)" in text
    assert f"its bottleneck at N = 4 is store at {store:.0%} of one core" in text
    assert "memory scales about linearly" in text and "no store process of its own" in text
    # The caveat comes before any sentence that says how much faster memory is.
    assert text.index("fastest but wrong") < text.index("faster than redis")


def test_ranking_is_at_the_top_of_the_page_and_markdown(stores):
    _, out = stores
    data = json.loads((out / "compare.json").read_text())
    text = (out / "compare.html").read_text()
    page = assert_self_contained(text)
    body = text[text.index("<h1>") :]
    first = re.search(r"</h1>\s*<p[^>]*>(.*?)</p>", body, re.S)
    assert first and html.unescape(first.group(1)) == data["ranking"]["text"]
    md = (out / "compare.md").read_text().splitlines()
    assert md[2] == f"**Ranking.** {data['ranking']['text']}"
    # tables: latency and bottlenecks per N per store, consistency per store
    header, *rows = page.tables["latency"]
    assert header == ["N", "redis p50 / p99 ms", "memory p50 / p99 ms"]
    lat = data["runs"][0]["points"][0]["latency_ms"]
    assert rows[0][1] == f"{report.num(lat['p50'])} / {report.num(lat['p99'])}"
    header, *rows = page.tables["bottlenecks"]
    assert header == [
        "N", "redis bottleneck", "redis store CPU", "memory bottleneck", "memory store CPU"
    ]  # fmt: skip
    assert rows[-1][1].startswith("store (") and rows[-1][1].endswith("of one core)")
    assert rows[-1][2].endswith("of one core) saturated") and "saturated" not in rows[0][2]
    assert {r[4] for r in rows} == {"no store process"}
    cons = {r[0]: r for r in page.tables["consistency"][1:]}
    assert cons["redis"][1] == "consistent" and cons["memory"][1] == "not consistent"
    assert "counters diverge across replicas in 9 of 12 trials" in html.unescape(cons["memory"][2])
    assert [img["alt"] for img in page.imgs] == ["throughput", "ratio", "latency"]
    assert_png((out / "figures" / "latency.png").read_bytes())


def test_ranking_without_consistency_checks_and_when_slower(runs: tuple[Path, Path]):
    """Older runs: not checked, said so; the baseline faster: a ratio below 1."""
    a, b = runs
    data = compare.comparison(compare_files.load_runs([("B", b), ("A", a)]))
    text = data["ranking"]["text"]
    assert data["ranking"]["winner"] == data["ranking"]["fastest"] == "B"
    assert "B is the fastest; its consistency was not checked." in text
    x = next(r for r in data["ratios"] if r["n"] == 4)
    assert x["ci"][1] < 1
    assert f"A reaches {x['ratio']:.2f}x of B's throughput at N = 4 [{x['ci'][0]:.2f}, " in text
    assert "(a point not valid)" in text  # both have an invalid trial at N = 4
    consistency = {c["label"]: c["state"] for c in compare_render.consistency_rows(data)}
    assert consistency == {"B": "not checked", "A": "not checked"}


def test_ranking_edge_cases(runs: tuple[Path, Path], tmp_path: Path):
    a, b = runs
    data = compare.comparison(compare_files.load_runs([("A", a), ("B", b)]))
    tied = json.loads(json.dumps(data))
    for x in tied["ratios"]:
        x["ci"] = [0.95, 1.08]
    assert "B and A are not distinguishable at N = 4: " in compare.ranking(tied)["text"]
    for r in tied["runs"]:  # every run wrong: nobody wins
        r["consistency"] = {"trials": 1, "inconsistent_trials": 1, "consistent": False}
        r["consistency"] |= {"counter": {}, "problems": ["counter lost increments"]}
    ranked = compare.ranking(tied)
    assert ranked["winner"] is None and "No run was consistent, so none wins." in ranked["text"]
    assert "A is wrong too: counter lost increments." in ranked["text"]
    mixed = json.loads(json.dumps(data))
    mixed["runs"][1]["consistency"] = tied["runs"][1]["consistency"]  # B (fastest) wrong
    ranked = compare.ranking(mixed)
    assert ranked["fastest"] == "B" and ranked["winner"] == "A"
    assert "B is the fastest but wrong: counter lost increments." in ranked["text"]
    assert (
        "A is the fastest run not shown wrong (its consistency was not checked)."
        in (ranked["text"])
    )
    c = make_run(tmp_path, RunSpec(run_id="c", ns=(1, 2)))
    d = make_run(tmp_path, RunSpec(run_id="d", ns=(3, 4)))
    apart = compare.comparison(compare_files.load_runs([("C", c), ("D", d)]))
    assert apart["ranking"]["n"] is None and "not ranked" in apart["ranking"]["text"]


def test_a_run_without_a_check_beside_checked_stores_is_named(stores, tmp_path: Path):
    checked, _ = stores
    old = make_run(tmp_path, RunSpec(lam=200.0))  # slower than both, never checked
    labelled = [("redis", checked["redis"]), ("memory", checked["memory"]), ("old", old)]
    data = compare.comparison(compare_files.load_runs(labelled))
    assert data["ranking"]["order"] == ["memory", "redis", "old"]
    assert data["ranking"]["winner"] == "redis"
    assert "Of the consistent runs, redis is the fastest." in data["ranking"]["text"]
    assert "Consistency was not checked for old." in data["ranking"]["text"]
