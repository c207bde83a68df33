"""The Analysis object of summary.json (schema 2): fits, efficiency and a verdict.

Input is a list of measurements (n, trial, throughput), one per trial, taken from a run's
summary.json or from a CSV, so results of other tools can be judged the same way.
No file I/O here: callers read the text or JSON and hand it over.

Efficiency is relative to the smallest measured N, per replica (normally N = 1):
E(N) = mean(X(N) / N) / mean(X(base) / base), and its CI is the bootstrap CI of that
ratio of two independent samples of trials. Karp-Flatt uses S(N) = N * E(N).
The fit uses the valid trials of a run when they cover 2 or more N, else every trial
(fit_input says which, and the verdict repeats it); invalid points are named either way.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import typing
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from hscale.analysis import precision, usl
from hscale.analysis.verdict import LINEAR_EFFICIENCY, efficiency_call, verdict

Measurement = tuple[int, int, float]  # (n replicas, trial, throughput req/s)
CONFIDENCE = 0.95  # the verdict's wording assumes it


def measurements_from_summary(summary: dict) -> list[Measurement]:
    """Per-trial throughputs of a summary.json: schema 2 `trials`, or schema 1 `points`."""
    if not isinstance(summary, dict):
        raise ValueError("summary.json is not a JSON object")
    version = summary.get("schema_version")
    try:
        if version == 2:
            return [
                (int(t["replicas"]), int(t["trial"]), trial_throughput(t))
                for t in summary.get("trials") or []
                if t.get("throughput_rps") is not None
            ]
        if version == 1:  # one measurement per N, no repeats
            return [
                (int(p["replicas"]), 1, float(p["throughput_rps"]))
                for p in summary.get("points") or []
                if p.get("throughput_rps") is not None
            ]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"summary.json schema {version}: malformed measurement ({exc})") from None
    raise ValueError(f"unsupported schema_version {version!r} (expected 1 or 2)")


def trial_throughput(trial: dict) -> float:
    """A trial's throughput as the run judges it: adjusted for the host's speed when the
    run adjusted it (analysis/precision.py), else as measured."""
    adjusted = trial.get("throughput_adj_rps")
    return float(trial["throughput_rps"] if adjusted is None else adjusted)


def fitted_params(summary: dict) -> int:
    """Parameters estimated beyond the N means (the speed and drift slopes), for the pooled
    CIs; runs recorded before the drift slope fitted the speed's alone."""
    cv = summary.get("precision") or {}
    return int(cv.get("fitted", 1 if cv.get("used") else 0))


def fit_input(summary: dict) -> tuple[list[Measurement], str]:
    """The measurements to fit and what they are: the valid trials (schema 2) when they
    cover 2 or more N, so a saturated load generator or a failing point does not bend the
    model; else every trial, said so."""
    every = measurements_from_summary(summary)
    if summary.get("schema_version") != 2:
        return every, "every point (schema 1 records no trials)"
    valid = [
        (int(t["replicas"]), int(t["trial"]), trial_throughput(t))
        for t in summary.get("trials") or []
        if t.get("valid") and t.get("throughput_rps") is not None
    ]
    if len(valid) == len(every):
        return every, "every trial (all valid)"
    if len({n for n, _, _ in valid}) >= 2:
        return valid, f"the {len(valid)} valid trials of {len(every)}"
    return every, (
        f"every trial, invalid ones too: only {len(valid)} of {len(every)} are valid, "
        "too few N to fit on their own"
    )


def _number(cell: str, column: str, line: int) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"row {line}: {column} is not a number: {cell!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"row {line}: {column} is not a finite number: {cell!r}")
    return value


def _whole(cell: str, column: str, line: int) -> int:
    value = _number(cell, column, line)
    if value != int(value):
        raise ValueError(f"row {line}: {column} must be a whole number, got {cell!r}")
    return int(value)


MAX_CSV_ROWS = 10_000  # every row is bootstrapped: a bound on memory and time


def _cells(line: str) -> list[str]:
    return next(csv.reader([line]), [])


def measurements_from_csv(text: str) -> list[Measurement]:
    """Rows of a CSV with a header naming columns n and throughput (any case, any order).

    An optional trial column numbers repeats; without it, repeats at one N are numbered in
    file order. Other columns are ignored, and so are blank lines and lines starting with #.
    Raises ValueError with a one-line message naming the offending row.
    """
    lines = [
        (i, line)
        for i, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise ValueError("CSV is empty: expected a header with columns n and throughput")
    header = [h.strip().lower() for h in _cells(lines[0][1])]
    missing = [c for c in ("n", "throughput") if c not in header]
    if missing:
        raise ValueError(
            f"CSV header lacks column {' and '.join(missing)} (found: {', '.join(header)})"
        )
    col = {name: header.index(name) for name in ("n", "throughput", "trial") if name in header}
    if len(lines) - 1 > MAX_CSV_ROWS:
        raise ValueError(
            f"CSV has {len(lines) - 1:,} data rows; at most {MAX_CSV_ROWS:,} (one per trial)"
        )
    out: list[Measurement] = []
    seen: dict[tuple[int, int], int] = {}
    counters: dict[int, int] = defaultdict(int)
    for line, text_line in lines[1:]:
        row = _cells(text_line)
        if len(row) < len(header):
            raise ValueError(f"row {line}: {len(row)} cells, the header has {len(header)}")
        n = _whole(row[col["n"]].strip(), "n", line)
        x = _number(row[col["throughput"]].strip(), "throughput", line)
        if n < 1:
            raise ValueError(f"row {line}: n must be at least 1, got {n}")
        if x < 0:
            raise ValueError(f"row {line}: throughput must not be negative, got {x:g}")
        counters[n] += 1
        trial = _whole(row[col["trial"]].strip(), "trial", line) if "trial" in col else counters[n]
        if (n, trial) in seen:  # counted twice, it would narrow the CI it does not earn
            raise ValueError(f"row {line}: n {n} trial {trial} repeats row {seen[(n, trial)]}")
        seen[(n, trial)] = line
        out.append((n, trial, x))
    if not out:
        raise ValueError("CSV has a header but no data rows")
    return out


def _clean(value: object) -> object:
    """JSON-safe: plain floats, no NaN or infinity (null instead), tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.bool_ | np.integer):
        return value.item()
    if value is None or isinstance(value, bool | str | int):
        return value
    f = float(value)  # type: ignore[arg-type]
    return f if math.isfinite(f) else None


def _models(result: usl.UslFit) -> dict:
    return {
        name: {
            "params": dict(mf.params),
            "ci": dict(mf.ci),
            "ci_method": mf.ci_method,
            "r_squared": mf.r_squared,
            "aicc": mf.aicc,  # reported only: the F tests choose the model
            "sse": mf.sse,
            "dof": mf.dof,
            "selection": _selection(mf.selection),
        }
        for name, mf in result.models.items()
    }


def _selection(sel: usl.Selection | None) -> dict | None:
    """A model's F test against the simpler model it was weighed against (None: linear)."""
    if sel is None:
        return None
    return {
        "test": sel.test,
        "against": sel.against,
        "F": sel.f,  # null in JSON when infinite (an exact richer fit)
        "p": sel.p,
        "df": None if sel.df is None else list(sel.df),
        "accepted": sel.accepted,
        "reason": sel.reason,
    }


def _chosen_selection(result: usl.UslFit) -> dict:
    """Why the chosen model: by F test, by a measured decline, or as the simplest."""
    sel = result.chosen.selection
    return {
        "model": result.model,
        "by": result.chosen_by,
        "reason": result.reason,
        "test": None if sel is None else sel.test,
        "against": None if sel is None else sel.against,
        "F": None if sel is None else sel.f,
        "p": None if sel is None else sel.p,
    }


def _decline(result: usl.UslFit) -> dict | None:
    return None if result.decline is None else dataclasses.asdict(result.decline)


def efficiency_by_n(
    by_n: dict[int, list[float]], base: int | None = None, fitted: int = 0
) -> tuple[dict[str, float | None], dict[str, list | None], dict[str, float | None]]:
    """E(N), its CI and Karp-Flatt e(N), keyed by str(N), relative to the per-replica
    throughput at `base` (default: the smallest N). The CI uses the trials' noise pooled
    over every N (precision.py); `fitted` counts parameters estimated beyond the means."""
    base = min(by_n) if base is None else base
    base_per = [x / base for x in by_n[base]]
    base_mean = float(np.mean(base_per))
    noise = precision.pooled_cv(by_n, fitted)
    eff: dict[str, float | None] = {}
    eff_ci: dict[str, list | None] = {}
    kf: dict[str, float | None] = {}
    for n in sorted(by_n):
        per = [x / n for x in by_n[n]]
        e = float(np.mean(per)) / base_mean if base_mean > 0 else None
        eff[str(n)] = e
        # The baseline is 1 by definition: a CI of it against itself would be noise.
        ci = (
            None
            if n == base or e is None or noise is None
            else precision.ratio_ci(len(per), len(base_per), e, *noise, CONFIDENCE)
        )
        eff_ci[str(n)] = None if ci is None else list(ci)
        kf[str(n)] = None if e is None else usl.karp_flatt(e * n, n)
    return eff, eff_ci, kf


def _noise(by_n: dict[int, list[float]], fitted: int) -> dict | None:
    """The trials' relative noise pooled over N (precision.py): what the CIs rest on."""
    noise = precision.pooled_cv(by_n, fitted)
    return None if noise is None else {"cv": noise[0], "df": noise[1]}


def _linear_up_to(eff_ci: dict[str, list | None]) -> int | None:
    """Largest N such that every N above the baseline up to it has E's CI low >= 0.9."""
    ns = sorted(int(n) for n in eff_ci)
    best = None
    for n in ns[1:]:
        ci = eff_ci[str(n)]
        if ci is None or ci[0] < LINEAR_EFFICIENCY:
            break
        best = n
    return best


def _from_points(points: Sequence[dict] | None) -> tuple[dict[str, str], dict[str, list[str]]]:
    bottlenecks: dict[str, str] = {}
    invalid: dict[str, list[str]] = {}
    for p in points or []:
        if "replicas" not in p:
            continue
        key = str(p["replicas"])
        b = p.get("bottleneck")
        if isinstance(b, dict) and b.get("component"):
            bottlenecks[key] = str(b["component"])
        if p.get("valid") is False:
            invalid[key] = [str(x) for x in p.get("notes") or []] or ["no reason recorded"]
    return bottlenecks, invalid


def analyze(
    measurements: Sequence[Measurement],
    points: Sequence[dict] | None = None,
    fit_on: str | None = None,
    fitted: int = 0,
    bootstrap: bool = True,
) -> dict:
    """The Analysis object: model fits, efficiency with CIs, bottlenecks and a verdict.
    bootstrap=False: a fit on a bound gets no parameter CIs (usl.fit), for a sweep's
    interim analyses; the choice of model and the verdict do not depend on them.

    sigma, kappa, lambda and their CIs, r_squared and peak_* are those of the chosen model
    (0 and null CI for a parameter that model fixes; peak_* null unless it is the USL with
    kappa > 0); usl_peak_* are the USL fit's whichever model is chosen (see usl.py).
    Raises ValueError when there are fewer than 2 distinct N.
    """
    if not measurements:
        raise ValueError("no measurements to analyze")
    by_n: dict[int, list[float]] = defaultdict(list)
    for n, _trial, x in measurements:
        by_n[int(n)].append(float(x))
    if len(by_n) < 2:
        raise ValueError(
            f"need throughput at 2 or more distinct replica counts to fit a scaling model, "
            f"got only N = {next(iter(by_n))}"
        )
    ns = [float(n) for n, _, _ in measurements]
    xs = [float(x) for _, _, x in measurements]
    result = usl.fit(ns, xs, CONFIDENCE, bootstrap)
    chosen = result.chosen
    eff, eff_ci, kf = efficiency_by_n(by_n, fitted=fitted)
    bottlenecks, invalid = _from_points(points)
    is_usl = result.model == "usl"
    base = min(by_n)
    analysis = {
        "n_points": result.n_points,
        "distinct_n": result.distinct_n,
        "models": _models(result),
        "model": result.model,
        "selection": _chosen_selection(result),
        "sigma": chosen.params["sigma"],
        "kappa": chosen.params["kappa"],
        "lambda": chosen.params["lambda"],
        "sigma_ci": chosen.ci.get("sigma"),
        "kappa_ci": chosen.ci.get("kappa"),
        "lambda_ci": chosen.ci.get("lambda"),
        "r_squared": chosen.r_squared,
        "peak_n": result.peak_n if is_usl else None,
        "peak_throughput": result.peak_throughput if is_usl else None,
        "peak_extrapolated": result.peak_extrapolated if is_usl else None,
        "usl_peak_n": result.peak_n,
        "usl_peak_throughput": result.peak_throughput,
        "usl_peak_extrapolated": result.peak_extrapolated,
        "measured_max": {"n": result.measured_max[0], "throughput": result.measured_max[1]},
        # What a model's lambda should be near: the measured X per replica at the smallest N.
        "measured_base": {"n": base, "per_replica": float(np.mean(by_n[base])) / base},
        "decline": _decline(result),
        "weak_fit": result.weak_fit,
        "efficiency": eff,
        "efficiency_ci": eff_ci,
        "karp_flatt": kf,
        "linear_up_to": _linear_up_to(eff_ci),
        # The baseline has no interval (it is 1 by definition) and no call.
        "efficiency_calls": {n: efficiency_call(ci) for n, ci in eff_ci.items() if int(n) != base},
        "bottlenecks": bottlenecks,
        "invalid": invalid,
        "fit_on": fit_on,
        "noise": _noise(by_n, fitted),
    }
    analysis = typing.cast(dict, _clean(analysis))
    analysis["verdict"] = verdict(analysis, list(points) if points else None)
    return analysis


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _num_ci(ci: Sequence[float] | None) -> str:
    return "" if ci is None else f" [{_num(ci[0])}, {_num(ci[1])}]"


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def render_text(analysis: dict, source: str | None = None) -> str:
    """A plain-text report of an Analysis object: models, peak, efficiency, verdict."""
    out = [f"Scaling analysis of {source}" if source else "Scaling analysis"]
    out.append(
        f"{analysis['n_points']} trials at {analysis['distinct_n']} distinct N; "
        f"supported model: {analysis['model']} (*)"
    )
    rows = [["model", "lambda", "sigma", "kappa", "R^2", "AICc", "F test p"]]
    for name, m in analysis["models"].items():
        row = [name + (" *" if name == analysis["model"] else "")]
        for key in ("lambda", "sigma", "kappa"):
            fitted = key in m["ci"]
            row.append(
                f"{_num(m['params'][key])}{_num_ci(m['ci'][key])}" if fitted else "0 (fixed)"
            )
        r2, aicc = m["r_squared"], m["aicc"]
        row += ["-" if r2 is None else f"{r2:.4f}", "-" if aicc is None else f"{aicc:.2f}"]
        test = m.get("selection") or {}
        row.append("-" if test.get("p") is None else f"{test['p']:.2g} vs {test['against']}")
        rows.append(row)
    out += ["", *_table(rows, right={4, 5}), ""]
    sel = analysis.get("selection") or {}
    if sel.get("reason"):
        out.append(f"Model choice ({sel.get('by')}): {sel['reason']}")
    top = analysis.get("measured_max")
    if top:
        out.append(f"Measured maximum: {_num(top['throughput'])} at N = {top['n']}")
    if analysis["usl_peak_n"] is not None:
        where = "outside" if analysis["usl_peak_extrapolated"] else "inside"
        tentative = "" if analysis["model"] == "usl" else "; tentative: USL not chosen"
        out.append(
            f"USL peak: N* = {analysis['usl_peak_n']:.1f} ({where} the measured N), "
            f"X(N*) = {_num(analysis['usl_peak_throughput'])}{tentative}"
        )
    elif analysis["models"]["usl"]["params"]["kappa"] == 0:
        out.append("USL peak: none (kappa = 0)")
    else:
        out.append("USL peak: none (too few distinct N to identify the USL)")
    rows = [["N", "efficiency", "95% CI", "Karp-Flatt"]]
    for n, e in analysis["efficiency"].items():
        ci = analysis["efficiency_ci"].get(n)
        kf = analysis["karp_flatt"].get(n)
        rows.append(
            [
                n,
                "-" if e is None else f"{e:.3f}",
                "" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]",
                "-" if kf is None else f"{kf:.4f}",
            ]
        )
    out += ["", *_table(rows, right={0, 1, 3}), "", analysis["verdict"]]
    return "\n".join(out)
