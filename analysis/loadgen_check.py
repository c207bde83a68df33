"""How much does hscale's Locust bend the curve? Its throughput over wrk's, paired.

`hscale loadgen-check` runs, at N = 1 and at the largest N, rounds of two windows on one
stack: wrk (a C generator that uses a few hundredths of a core) and hscale's own Locust
run, in alternating order so slow drift cancels within a pair. Each pair gives
log(locust / wrk); their mean with a t interval is the bias at that N, and the
difference between the two N is the bias the load generator puts into E(N). The speed
probe's reading in each window is a control variate, one slope over every N, as in the
sweep. Numbers in, numbers out: the measurement is hscale/loadgen_check.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import mean, stdev

from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Window:
    """One generator's window: what it drove and what the stack spent on it."""

    rps: float
    loadgen_cores: float  # the load generator's own CPU over the window
    replica_ms: float  # the replicas' CPU per request
    probe_speed: float | None = None  # the speed probe's work per CPU-ms; None: no reading


Pair = tuple[Window, Window]  # (wrk, locust) of one round


def ratio_ci(logs: Sequence[float]) -> dict[str, float | None]:
    """exp of the logs' mean with its t interval (None with a single round)."""
    m = mean(logs)
    if len(logs) < 2:
        return {"ratio": math.exp(m), "low": None, "high": None}
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(logs) - 1) * stdev(logs) / math.sqrt(len(logs))
    return {"ratio": math.exp(m), "low": math.exp(m - half), "high": math.exp(m + half)}


def _log_ratio(pair: Pair) -> float:
    wrk, locust = pair
    return math.log(locust.rps / wrk.rps)


def _log_speed(pair: Pair) -> float | None:
    wrk, locust = pair
    if not wrk.probe_speed or not locust.probe_speed:
        return None
    return math.log(locust.probe_speed / wrk.probe_speed)


def speed_slope(found: Mapping[int, Sequence[Pair]]) -> float | None:
    """The probe's slope in log(locust / wrk) on log(its speed ratio), within each N: None
    where a window has no reading or the speeds never differ."""
    dev: list[tuple[float, float]] = []
    for pairs in found.values():
        rows = [(_log_ratio(p), _log_speed(p)) for p in pairs]
        if any(e is None for _, e in rows):
            return None
        dm, em = mean(d for d, _ in rows), mean(e for _, e in rows if e is not None)
        dev += [(d - dm, e - em) for d, e in rows if e is not None]
    sxx = sum(e * e for _, e in dev)
    return sum(d * e for d, e in dev) / sxx if sxx > 0 else None


def _e_bias(logs: Mapping[int, Sequence[float]]) -> dict[str, float | None]:
    """hscale's E(largest) over wrk's: the largest N's log ratios less N = 1's, with the
    pooled two-sample t interval."""
    (_, first), (_, last) = sorted(logs.items())[0], sorted(logs.items())[-1]
    m = mean(last) - mean(first)
    df = len(first) + len(last) - 2
    if df < 1 or len(first) < 2 or len(last) < 2:
        return {"ratio": math.exp(m), "low": None, "high": None}
    pooled = ((len(first) - 1) * stdev(first) ** 2 + (len(last) - 1) * stdev(last) ** 2) / df
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * math.sqrt(
        pooled * (1 / len(first) + 1 / len(last))
    )
    return {"ratio": math.exp(m), "low": math.exp(m - half), "high": math.exp(m + half)}


def summarize(found: Mapping[int, Sequence[Pair]]) -> dict:
    """summary of a check (loadgen_check.json's "result"): per N, each generator's means
    and hscale / wrk; with two N, the bias in E(N), raw and adjusted for the probe."""
    beta = speed_slope(found)
    raw = {n: [_log_ratio(p) for p in pairs] for n, pairs in found.items()}
    adjusted = {
        n: [_log_ratio(p) - (beta or 0.0) * (_log_speed(p) or 0.0) for p in pairs]
        for n, pairs in found.items()
    }
    points = []
    for n, pairs in sorted(found.items()):
        side = {}
        for name, rows in (("wrk", [w for w, _ in pairs]), ("locust", [c for _, c in pairs])):
            side[name] = {
                k: mean(asdict(r)[k] for r in rows) for k in ("rps", "loadgen_cores", "replica_ms")
            }
        points.append(
            {
                "replicas": n,
                "rounds": len(pairs),
                **side,
                "pairs": [[asdict(w), asdict(c)] for w, c in pairs],
                "ratio": ratio_ci(raw[n]),
                "ratio_adjusted": ratio_ci(adjusted[n]) if beta is not None else None,
            }
        )
    two = len(found) >= 2
    return {
        "points": points,
        "probe_slope": beta,
        "e_bias": _e_bias(raw) if two else None,
        "e_bias_adjusted": _e_bias(adjusted) if two and beta is not None else None,
    }


def _fmt(ci: Mapping[str, float | None]) -> str:
    if ci.get("low") is None:
        return f"{ci['ratio']:.3f}"
    return f"{ci['ratio']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def describe(check: Mapping) -> str:
    """One line: what a check found (the sweep states the latest one for its host)."""
    result = check["result"]
    best = "ratio_adjusted" if result.get("e_bias_adjusted") else "ratio"
    per_n = ", ".join(f"N = {p['replicas']} {_fmt(p[best])}" for p in result["points"])
    e = result.get("e_bias_adjusted") or result.get("e_bias")
    largest = result["points"][-1]["replicas"]
    line = f"hscale's throughput over wrk's {per_n}"
    if e:
        line += f"; E({largest}) reads {_fmt(e)} of wrk's"
    return line + ("" if best == "ratio" else " (adjusted for the speed probe)")


def table(check: Mapping) -> list[str]:
    """The console's lines for a check: each generator per N, then the ratios."""
    result = check.get("result")
    if not result:
        return ["no round finished: nothing to compare"]
    lines = []
    for p in result["points"]:
        for name in ("wrk", "locust"):
            side = p[name]
            lines.append(
                f"N={p['replicas']} {'hscale' if name == 'locust' else name:6s}: "
                f"{side['rps']:7.0f} req/s, load generator {side['loadgen_cores']:.2f} cores, "
                f"replicas {side['replica_ms']:.3f} ms CPU per request"
            )
        lines.append(
            f"N={p['replicas']} hscale / wrk: {_fmt(p['ratio'])} raw"
            + (f", {_fmt(p['ratio_adjusted'])} adjusted" if p.get("ratio_adjusted") else "")
            + f" over {p['rounds']} round(s)"
        )
    if result.get("e_bias"):
        largest = result["points"][-1]["replicas"]
        lines.append(
            f"E({largest}), hscale's over wrk's: {_fmt(result['e_bias'])} raw"
            + (
                f", {_fmt(result['e_bias_adjusted'])} adjusted (probe slope "
                f"{result['probe_slope']:.2f})"
                if result.get("e_bias_adjusted")
                else ""
            )
        )
    lines.append(describe(check))
    return lines
