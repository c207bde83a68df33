"""How much each precision method buys on real runs: the trial noise and every E(N)'s
interval and call raw, adjusted for the host speed, for the drift, and for both; E(N) from
independent trials vs from rounds (blocks of trials adjacent in time); and the first trial
against the later ones at its N.

    .venv/bin/python scripts/precision_study.py results/<run> [results/<run> ...]

Reads only summary.json; prints one block per run.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from hscale.analysis import precision, verdict

# (label, speed, drift): the adjustments compared, as SPEED_ADJUST and DRIFT_ADJUST set them
ADJUSTMENTS = (("raw", False, False), ("speed", True, False), ("drift", False, True),
               ("both", True, True))  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    return p.parse_args()


def block_efficiency(trials: list[dict], key: str) -> dict[int, tuple[float, float, int]]:
    """E(N) per round r as X_r(N) / (N X_r(base)), then mean and 95% t half-width (log)."""
    base = min(t["replicas"] for t in trials)
    rounds: dict[int, dict[int, float]] = defaultdict(dict)
    for t in trials:
        rounds[t["trial"]][t["replicas"]] = t[key]
    out = {}
    for n in sorted({t["replicas"] for t in trials} - {base}):
        logs = [math.log(r[n] / n / r[base]) for r in rounds.values() if n in r and base in r]
        if len(logs) < 2:
            continue
        half = precision._t(len(logs) - 1) * float(np.std(logs, ddof=1)) / math.sqrt(len(logs))
        out[n] = (math.exp(float(np.mean(logs))), half, len(logs))
    return out


def adjustments(trials: list[dict]) -> None:
    """Each adjustment on the same trials: pooled CV, and E(N) with its interval and call."""
    base = min(t["replicas"] for t in trials)
    for label, speed, drift in ADJUSTMENTS:
        cv = precision.control_variate(trials, speed, drift)
        by_n: dict[int, list[float]] = defaultdict(list)
        for t, x in zip(trials, cv["adjusted"], strict=True):
            by_n[t["replicas"]].append(x)
        noise = precision.pooled_cv(by_n, cv["fitted"])
        if noise is None:
            continue
        cells = []
        for n in sorted(by_n):
            if n == base:
                continue
            e = float(np.mean(by_n[n])) / n * base / float(np.mean(by_n[base]))
            ci = precision.ratio_ci(len(by_n[n]), len(by_n[base]), e, *noise)
            call = verdict.efficiency_call(ci)
            cells.append(f"E({n}) {e:.3f} +-{(ci[1] - ci[0]) / 2 / e:.1%} {call}")
        slopes = f"beta {cv['beta']}" if cv["beta"] is not None else ""
        slopes += f" drift {cv['drift_per_trial']}" if cv["drift_per_trial"] is not None else ""
        print(f"  {label:5s} CV {noise[0]:.2%} ({noise[1]} df) {slopes}: " + "; ".join(cells))


def study(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    trials = summary["trials"]
    print(f"== {run.name}: {len(trials)} trials, {summary['status']}")
    adjustments(trials)
    cv = precision.control_variate(trials, drift=False)
    print(
        f"trial CV pooled over N: raw {cv['cv_raw']:.2%}"
        + (
            f", adjusted {cv['cv_adjusted']:.2%} (beta {cv['beta']:.2f} {cv['beta_ci']})"
            if cv["used"]
            else f" (no adjustment: {cv['reason']})"
        )
    )
    by_n: dict[int, list[dict]] = defaultdict(list)
    for t in trials:
        by_n[t["replicas"]].append(t)
    first = min(trials, key=lambda t: t["seq"])
    later = [t["throughput_rps"] for t in by_n[first["replicas"]] if t is not first]
    if later:
        print(
            f"first trial (N = {first['replicas']}): {first['throughput_rps']:.0f} req/s, "
            f"{first['throughput_rps'] / np.mean(later) - 1:+.1%} against the later ones"
        )
    adjusted = {id(t): x for t, x in zip(trials, cv["adjusted"], strict=True)}
    for t in trials:
        t["_adj"] = adjusted[id(t)]
    raw_noise = precision.pooled_cv(
        {n: [t["throughput_rps"] for t in ts] for n, ts in by_n.items()}
    )
    adj_noise = precision.pooled_cv(
        {n: [t["_adj"] for t in ts] for n, ts in by_n.items()}, 1 if cv["used"] else 0
    )
    base = min(by_n)
    for label, key, noise in (("raw", "throughput_rps", raw_noise), ("adj", "_adj", adj_noise)):
        blocks = block_efficiency(trials, key)
        for n, (e, half, k) in blocks.items():
            pooled = ""
            if noise:
                h = (
                    precision._t(noise[1])
                    * noise[0]
                    * math.sqrt(1 / len(by_n[n]) + 1 / len(by_n[base]))
                )
                pooled = f"; pooled +-{h:.1%}"
            print(f"  {label} E({n}) by rounds {e:.3f} +-{half:.1%} ({k} rounds){pooled}")
    speeds = [t.get("host_speed") for t in trials]
    if all(speeds):
        s = np.asarray(speeds)
        print(
            f"host speed: CV {np.std(s, ddof=1) / np.mean(s):.1%}, "
            f"range {s.min():.1f}-{s.max():.1f}"
        )


def main() -> None:
    for run in parse_args().runs:
        study(run)


if __name__ == "__main__":
    main()
