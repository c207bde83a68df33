"""One paragraph saying how throughput scales, judged on confidence bounds, not estimates.

Every claim names the interval it rests on, so a reader can see how sure it is: linear
scaling only where efficiency's lower 95% bound clears LINEAR_EFFICIENCY, contention or
coherency only when the analysis chose that model (an F test, or a measured decline).
Works on an Analysis dict (see analyze.py) and, optionally, the Point objects of a
summary.json; every field of a point may be missing (CSV input has no points at all).
"""

from __future__ import annotations

from collections.abc import Sequence

from hscale.analysis.scaling import SUPERLINEAR
from hscale.analysis.usl import ALPHA

LINEAR_EFFICIENCY = 0.9
# An E(N) whose whole 95% interval lies within LINEAR_EFFICIENCY +- this is "on the line":
# an answer (an equivalence test), not a maybe. Without it an E near 0.9 stays undecided
# however many trials run; 0.05 is about the interval a default sweep reaches here.
EQUIVALENCE_MARGIN = 0.05
CALLS = ("linear", "on the line", "sublinear", "undecided")
BUDGETED_KINDS = ("replica", "loadgen")  # others are judged against one core
# Below this share of its budget even the busiest component is not what limits: the time
# goes to waiting (a saturated component runs at 90% or more of its budget here).
WAITING_BELOW = 0.7


def _g(value: float) -> str:
    return f"{value:.3g}"


def _ci(ci: Sequence[float] | None) -> str:
    return "" if ci is None else f" [{_g(ci[0])}, {_g(ci[1])}]"


def _ns(ns: Sequence[int | str]) -> str:
    return ", ".join(str(n) for n in ns)


def equivalence_band() -> tuple[float, float]:
    """The efficiencies "on the line" (rounded: 0.9 - 0.05 is not 0.85 in floating point)."""
    return (
        round(LINEAR_EFFICIENCY - EQUIVALENCE_MARGIN, 6),
        round(LINEAR_EFFICIENCY + EQUIVALENCE_MARGIN, 6),
    )


def verdict_efficiency(point: dict, analysis: dict) -> tuple[float | None, list | None]:
    """E(N) and its CI as the verdict has them (of the trials the fit uses, the valid ones
    where they suffice), so the table and the verdict never show two values; the point's
    own (all its trials) without an analysis."""
    key = str(point["replicas"])
    if key in (analysis.get("efficiency") or {}):
        return analysis["efficiency"][key], (analysis.get("efficiency_ci") or {}).get(key)
    return point.get("efficiency"), point.get("efficiency_ci")


def efficiency_call(ci: Sequence[float] | None) -> str | None:
    """What E(N)'s 95% interval says of "is efficiency at least LINEAR_EFFICIENCY?"."""
    if not ci:
        return None
    lo, hi = ci
    if lo >= LINEAR_EFFICIENCY:
        return "linear"
    if hi < LINEAR_EFFICIENCY:
        return "sublinear"
    band_lo, band_hi = equivalence_band()
    if lo >= band_lo and hi <= band_hi:
        return "on the line"
    return "undecided"


def calls_of(analysis: dict) -> dict[str, str | None]:
    """E(N)'s calls; computed from the intervals for analyses written before calls were."""
    if "efficiency_calls" in analysis:
        return analysis["efficiency_calls"] or {}
    cis = analysis.get("efficiency_ci") or {}
    return {n: efficiency_call(ci) for n, ci in cis.items() if ci}


def decided(analysis: dict) -> bool:
    """Every E(N) has an interval and a call other than undecided."""
    calls = calls_of(analysis)
    return bool(calls) and all(c not in (None, "undecided") for c in calls.values())


def _headline(analysis: dict) -> str:
    """The answer to "N times the servers, N times the throughput?" at the largest N."""
    eff = analysis.get("efficiency") or {}
    ns = sorted(int(n) for n in eff)
    if len(ns) < 2 or eff.get(str(ns[-1])) is None:
        return ""
    b, n = ns[0], ns[-1]
    e, ci = eff[str(n)], (analysis.get("efficiency_ci") or {}).get(str(n))
    scaled = None if not ci else [c * n / b for c in ci]
    return (
        f"{n / b:g}x the replicas of N = {b} give {e * n / b:.2f}x{_ci2(scaled)} its "
        f"throughput (efficiency {e:.2f}{_ci2(ci)})."
    )


def _calls_part(analysis: dict) -> str:
    """The N past the linear range whose E(N) is decided as sublinear or on the line."""
    calls = calls_of(analysis)
    eff, eff_ci = analysis.get("efficiency") or {}, analysis.get("efficiency_ci") or {}
    k = analysis.get("linear_up_to")

    def _listed(ns: list[int]) -> str:
        return ", ".join(f"E({n}) = {eff[str(n)]:.2f}{_ci2(eff_ci.get(str(n)))}" for n in ns)

    said: dict[str, list[int]] = {"linear": [], "on the line": [], "sublinear": [], "undecided": []}
    for n in sorted((int(n) for n in calls), key=int)[1:]:
        call = calls[str(n)]
        if (k is None or n > k) and call is not None and call in said:
            said[call].append(n)
    parts = []
    if said["linear"]:  # past an N that is not: linear_up_to stops there
        parts.append(f"Linear with 95% confidence beyond that: {_listed(said['linear'])}.")
    if said["on the line"]:
        lo, hi = equivalence_band()
        listed = _listed(said["on the line"])
        parts.append(
            f"{listed} {'is' if len(said['on the line']) == 1 else 'are'} on the "
            f"{LINEAR_EFFICIENCY} line: the whole interval lies within {lo:.2f} to {hi:.2f}, "
            "so more trials would not move it off the line by more than that."
        )
    if said["sublinear"]:
        parts.append(f"Below linear with 95% confidence: {_listed(said['sublinear'])}.")
    if said["undecided"] and k is not None:  # with k None, _linear_part says it
        lo, hi = equivalence_band()  # not "wider than the band": [0.87, 0.951] is narrower
        parts.append(
            f"Undecided: {_listed(said['undecided'])}, an interval that contains "
            f"{LINEAR_EFFICIENCY} and does not lie within {lo:.2f} to {hi:.2f}."
        )
    return " ".join(parts)


def _ci2(ci: Sequence[float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"


def _linear_part(analysis: dict) -> str:
    eff = analysis.get("efficiency") or {}
    eff_ci = analysis.get("efficiency_ci") or {}
    ns = sorted(int(n) for n in eff)
    k = analysis.get("linear_up_to")
    if k is not None and eff_ci.get(str(k)):
        lo = eff_ci[str(k)][0]
        return (
            f"Throughput scales linearly up to N = {k} (efficiency >= {LINEAR_EFFICIENCY} "
            f"with 95% confidence: lower CI bound {lo:.2f} at N = {k})."
        )
    if len(ns) < 2:
        return "There is too little data to judge linear scaling."
    n2 = ns[1]
    e, ci = eff.get(str(n2)), eff_ci.get(str(n2))
    if e is None:
        return f"Efficiency at N = {n2} could not be computed (baseline throughput is 0)."
    if ci is None:
        return (
            f"Linear scaling cannot be confirmed: E({n2}) = {e:.2f} has no confidence interval "
            "(fewer than 2 trials per N)."
        )
    if calls_of(analysis).get(str(n2)) in ("sublinear", "on the line"):
        return ""  # _calls_part says it
    return (
        f"Linear scaling is not established even to N = {n2}: efficiency {e:.2f} "
        f"[{ci[0]:.2f}, {ci[1]:.2f}] has its lower 95% bound below {LINEAR_EFFICIENCY}."
    )


def _model_part(analysis: dict) -> str:
    models = analysis.get("models") or {}
    model = analysis.get("model")
    k = analysis.get("linear_up_to")
    n_max = max((int(n) for n in analysis.get("efficiency") or {}), default=None)
    if k is None:
        lead = "It is"
    elif k == n_max:  # linear over everything measured: the limit lies beyond it
        lead = "Beyond the measured N it would be"
    else:
        lead = "Beyond that it is"
    chosen = models.get(model) or {}
    params, ci = chosen.get("params") or {}, chosen.get("ci") or {}
    top = _measured_max(analysis, n_max)
    if model == "amdahl":
        s, lam = params.get("sigma", 0.0), params.get("lambda", 0.0)
        cap = f", which caps throughput at lambda/sigma = {lam / s:,.0f}" if s > 0 else ""
        return (
            f"{lead} contention-bound (Amdahl: sigma = {_g(s)}{_ci(ci.get('sigma'))}, "
            f"lambda = {_g(lam)}{_ci(ci.get('lambda'))} per replica; {_chosen_how(analysis)})"
            f"{cap}.{_amdahl_misfit(analysis, lam)}{top}"
        )
    if model == "usl":
        text = (
            f"{lead} coherency-bound (USL: sigma = {_g(params.get('sigma', 0.0))}"
            f"{_ci(ci.get('sigma'))}, kappa = {_g(params.get('kappa', 0.0))}"
            f"{_ci(ci.get('kappa'))}; {_chosen_how(analysis)})"
        )
        if analysis.get("peak_n") is not None:
            where = "extrapolated" if analysis.get("peak_extrapolated") else "within the measured N"
            text += (
                f" with a fitted peak at N* = {analysis['peak_n']:.1f} ({where}) of "
                f"{analysis.get('peak_throughput') or 0:,.0f}; beyond N* more replicas lower "
                "throughput"
            )
        return text + "." + top
    if model == "linear":
        lam = params.get("lambda", 0.0)
        fitted = f"lambda = {_g(lam)}{_ci(ci.get('lambda'))} per replica"
        tests = _richer_tests(analysis)
        if _clearly_sublinear(analysis):
            # Linear stays only because no richer model passed its F test.
            return (
                "Scaling is measurably sublinear, yet neither the Amdahl nor the USL fit is "
                f"significantly better than a straight line ({fitted}; {tests}) with this "
                "few points, so the data cannot say whether contention or coherency limits "
                f"it: measure more N or more trials.{top}"
            )
        return (
            f"The linear model describes the data best ({fitted}; {tests}): no contention "
            f"or coherency cost is distinguishable from 0.{top}"
        )
    return ""


def _p(p: float) -> str:
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"


def _chosen_how(analysis: dict) -> str:
    """Which test chose the model: an F test, or a measured decline only the USL can follow."""
    sel = analysis.get("selection") or {}
    if sel.get("by") == "decline":
        d = analysis.get("decline") or {}
        bound = d.get("noise_bound")
        noise = "5%" if bound is None else f"the noise bound {bound:,.0f}"
        test = (
            f"its F test against {sel['against']} alone gave {_p(sel['p'])}"
            if sel.get("p") is not None
            else "no F test was possible"
        )
        return (
            f"chosen because measured throughput falls {d.get('drop_ratio', 0):.1%} from "
            f"N = {d.get('from_n')} to N = {d.get('to_n')}, more than {noise}, and only the "
            f"USL can fall; {test}"
        )
    if sel.get("test") == "F" and sel.get("p") is not None:
        return f"chosen over {sel.get('against')} by an F test, {_p(sel['p'])}"
    return "chosen as the simplest model"


def _richer_tests(analysis: dict) -> str:
    """The F tests that kept linear: each richer model's p, or why it had no test."""
    models = analysis.get("models") or {}
    said = []
    for name, label in (("amdahl", "Amdahl"), ("usl", "USL")):
        sel = models.get(name, {}).get("selection") or {}
        if sel.get("p") is not None:
            said.append(f"{label} F test {_p(sel['p'])}, not below {ALPHA:g}")
        elif sel.get("reason"):
            said.append(f"{label}: {sel['reason']}")
    return "; ".join(said) or "no richer model could be tested"


def _measured_max(analysis: dict, n_max: int | None) -> str:
    top = analysis.get("measured_max") or {}
    if top.get("throughput") is None:
        return ""
    where = " (the largest N measured)" if top.get("n") == n_max else ""
    return f" The highest measured throughput is {top['throughput']:,.0f} at N = {top['n']}{where}."


def _amdahl_misfit(analysis: dict, lam: float) -> str:
    """Amdahl's lambda far from the measured X per replica at the smallest N: a misfit."""
    base = analysis.get("measured_base") or {}
    per = base.get("per_replica")
    if not per or not lam:
        return ""
    ratio = lam / per
    if 0.67 <= ratio <= 1.5:
        return ""
    return (
        f" Its lambda = {_g(lam)} per replica is {ratio:.2f}x the {_g(per)} measured per "
        f"replica at N = {base.get('n')}: a sign that the Amdahl curve misfits these data."
    )


def _clearly_sublinear(analysis: dict) -> bool:
    """Some efficiency is below LINEAR_EFFICIENCY with confidence, or Amdahl's sigma > 0."""
    upper = [ci[1] for ci in (analysis.get("efficiency_ci") or {}).values() if ci]
    amdahl = (analysis.get("models") or {}).get("amdahl") or {}
    sigma_ci = (amdahl.get("ci") or {}).get("sigma")
    return any(u < LINEAR_EFFICIENCY for u in upper) or bool(sigma_ci and sigma_ci[0] > 0)


def _peak_caveat(analysis: dict) -> str:
    """The USL fit's peak when the chosen model has none: say why it is only tentative."""
    model = analysis.get("model")
    peak_n = analysis.get("usl_peak_n", analysis.get("peak_n"))  # older dicts: peak_n
    if model == "usl" or peak_n is None:
        return ""
    usl = (analysis.get("models") or {}).get("usl") or {}
    sel = usl.get("selection") or {}
    if sel.get("p") is not None:
        why = (
            f"the F test does not support the USL over the {sel.get('against')} model "
            f"({_p(sel['p'])}, not below {ALPHA:g})"
        )
    else:
        why = f"the USL was not tested ({sel.get('reason') or 'no test possible'})"
    peak_x = analysis.get("usl_peak_throughput")
    at = "" if peak_x is None else f" of {peak_x:,.0f}"
    return (
        f"The full USL fit puts a peak at N* = {peak_n:.1f}{at}, but {why}, so that peak is "
        "tentative."
    )


def _superlinear_part(analysis: dict) -> str:
    eff = analysis.get("efficiency") or {}
    eff_ci = analysis.get("efficiency_ci") or {}
    high = [(int(n), e) for n, e in eff.items() if e is not None and e > SUPERLINEAR]
    if not high:
        return ""
    listed = "; ".join(f"N = {n}: {e:.2f}{_ci(eff_ci.get(str(n)))}" for n, e in sorted(high))
    return (
        f"Efficiency above {SUPERLINEAR} ({listed}) is suspicious: more likely the smaller N "
        "was under-loaded or unevenly throttled than real superlinearity; check per-replica "
        "CPU before trusting the curve."
    )


def _bottleneck_part(analysis: dict, points: Sequence[dict] | None) -> str:
    found: dict[int, dict] = {}
    for p in points or []:
        b = p.get("bottleneck")
        if "replicas" in p and isinstance(b, dict) and b.get("component"):
            found[int(p["replicas"])] = b
    if not found:  # no points: component names only, if the analysis has them
        found = {int(n): {"component": c} for n, c in (analysis.get("bottlenecks") or {}).items()}
    if not found:
        return ""
    top = max(found)
    b = found[top]
    util = b.get("util_of_budget")
    whose = "their" if b["component"] == "replicas" else "its"
    of = f"{whose} CPU budget" if b.get("kind") in BUDGETED_KINDS else "one core"
    at = f" at {util:.0%} of {of}" if isinstance(util, int | float) else ""
    if isinstance(util, int | float) and util < WAITING_BELOW:
        return (
            f"No component is near its CPU budget at N = {top} (the busiest, "
            f"{b['component']}, is{at}): requests wait on something other than CPU, such "
            "as a lock, I/O or a call to another service."
        )
    text = f"The bottleneck at N = {top} is {b['component']}{at}"
    others: dict[str, list[int]] = {}
    for n, other in sorted(found.items()):
        if n != top and other["component"] != b["component"]:
            others.setdefault(other["component"], []).append(n)
    if others:
        text += " (" + "; ".join(f"at N = {_ns(ns)}: {c}" for c, ns in others.items()) + ")"
    return text + "."


def _invalid_part(analysis: dict, points: Sequence[dict] | None) -> str:
    invalid = dict(analysis.get("invalid") or {})
    for p in points or []:
        if "replicas" in p and p.get("valid") is False:
            invalid.setdefault(str(p["replicas"]), list(p.get("notes") or []))
    if not invalid:
        return ""
    ns = sorted(invalid, key=int)
    reasons = "; ".join(f"N = {n}: {', '.join(invalid[n]) or 'no reason recorded'}" for n in ns)
    word = "Point" if len(ns) == 1 else "Points"
    verb = "is" if len(ns) == 1 else "are"
    text = f"{word} N = {_ns(ns)} {verb} invalid ({reasons})."
    fit_on = analysis.get("fit_on")
    return f"{text} The fit uses {fit_on}." if fit_on else f"{text} The fit includes them."


def verdict(analysis: dict, points: list[dict] | None = None) -> str:
    """One paragraph: linear range, what limits scaling, bottleneck, caveats."""
    parts = [
        _headline(analysis),
        _linear_part(analysis),
        _calls_part(analysis),
        _model_part(analysis),
        _peak_caveat(analysis),
        _superlinear_part(analysis),
        _bottleneck_part(analysis, points),
        _invalid_part(analysis, points),
    ]
    if analysis.get("weak_fit"):
        parts.append(f"The fit is weak: {analysis['weak_fit']}.")
    return " ".join(p for p in parts if p)
