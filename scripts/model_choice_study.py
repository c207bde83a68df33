"""How often analysis/usl.py picks each model for data of known shape and noise.

Draws synthetic sweeps (N = 1..n_max, a few trials per N, Gaussian noise with a fixed
coefficient of variation) from a linear, an Amdahl and a retrograde USL curve, fits each
with usl.fit and counts the chosen model. The retrograde curve puts its peak at 0.6 n_max,
so it falls about 12% from its measured maximum to n_max in both ranges; at 0.8 n_max
it falls only 2-3%, within the noise. Deterministic:
every cell has its own seed derived from --seed.

    .venv/bin/python scripts/model_choice_study.py            # the table in docs/analysis.md
    .venv/bin/python scripts/model_choice_study.py --draws 50 # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hscale.analysis import usl

LAMBDA = 100.0  # throughput of one replica; its value does not matter for the choice
SIGMA = 0.05  # contention of the retrograde curve


@dataclass(frozen=True)
class Shape:
    name: str
    truth: str  # the model that generated the data
    sigma: float
    peak_share: float | None  # retrograde: N* = peak_share * n_max

    def params(self, n_max: int) -> tuple[float, float]:
        if self.peak_share is None:
            return self.sigma, 0.0
        return self.sigma, (1.0 - self.sigma) / (self.peak_share * n_max) ** 2


SHAPES = (
    Shape("linear", "linear", 0.0, None),
    Shape("contention σ=0.08", "amdahl", 0.08, None),
    Shape("retrograde N*=0.6 n_max", "usl", SIGMA, 0.6),
    Shape("retrograde N*=0.8 n_max", "usl", SIGMA, 0.8),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=100, help="datasets per cell (default 100)")
    p.add_argument("--trials", type=int, default=3, help="trials per N (default 3)")
    p.add_argument(
        "--n-max", type=int, nargs="+", default=[4, 8], help="largest N of each sweep (1..n)"
    )
    p.add_argument("--cv", type=float, nargs="+", default=[0.02, 0.05, 0.10], help="noise CVs")
    p.add_argument("--seed", type=int, default=9, help="base seed (default 9)")
    return p.parse_args(argv)


def drop_ratio(n_max: int, sigma: float, kappa: float) -> float:
    """True relative fall from the highest measured N's curve value to X(n_max)."""
    x = usl.throughput(np.arange(1, n_max + 1), LAMBDA, sigma, kappa)
    return float(1.0 - x[-1] / x.max())


def cell(
    shape: Shape, n_max: int, cv: float, draws: int, trials: int, seed: int
) -> dict[str, float]:
    """Share of draws that pick each model, and of those where a decline forced the USL."""
    sigma, kappa = shape.params(n_max)
    rng = np.random.default_rng(seed)
    n = np.repeat(np.arange(1, n_max + 1, dtype=float), trials)
    mean = usl.throughput(n, LAMBDA, sigma, kappa)
    counts = dict.fromkeys((*usl.MODELS, "decline"), 0)
    for _ in range(draws):
        x = np.clip(mean * (1.0 + cv * rng.standard_normal(n.size)), 0.0, None)
        result = usl.fit(n, x, bootstrap=False)
        counts[result.model] += 1
        counts["decline"] += result.chosen_by == "decline"
    return {k: v / draws for k, v in counts.items()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    print(
        "| data | N | CV | true drop | linear | amdahl | usl | usl by decline |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    k = 0
    for shape in SHAPES:
        for n_max in args.n_max:
            sigma, kappa = shape.params(n_max)
            drop = drop_ratio(n_max, sigma, kappa)
            for cv in args.cv:
                share = cell(shape, n_max, cv, args.draws, args.trials, args.seed * 1000 + k)
                k += 1
                picks = [
                    f"**{share[m]:.0%}**" if m == shape.truth else f"{share[m]:.0%}"
                    for m in usl.MODELS
                ]
                print(
                    f"| {shape.name} | 1..{n_max} | {cv:.0%} | "
                    f"{'-' if drop == 0 else f'{drop:.1%}'} | {' | '.join(picks)} | "
                    f"{share['decline']:.0%} |",
                    flush=True,
                )
    print(
        f"\n{args.draws} draws per row, {args.trials} trials per N, seed {args.seed}; "
        f"{time.perf_counter() - start:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
