"""`make compare STORES="..."`: the same sweep once per data store, in interleaved rounds.

Round k runs trial k of every N for each store in turn (the order of stores reversing
each round, like the order of N within a sweep), so a drift of the machine spreads over
all stores instead of favouring the first. Each store has a sub-run of its own,
results/<compare-id>/<store>/, a complete run directory that grows by one trial per N per
round; the comparison of the sub-runs goes to results/<compare-id>/comparison/.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from hscale import runtimes, target
from hscale import stores as store_registry
from hscale.errors import UsageError
from hscale.results import RunDir, load_summary, new_run_id, write_json
from hscale.settings import Settings


def parse_stores(raw: str) -> list[str]:
    stores = raw.replace(",", " ").split()
    known = tuple(store_registry.STORES)
    unknown = [s for s in stores if s not in known]
    if unknown:
        raise UsageError(f"unknown store {unknown[0]!r} in STORES; choose from: {', '.join(known)}")
    if len(set(stores)) != len(stores):
        raise UsageError(f"STORES must not repeat a store, got {raw!r}")
    if len(stores) < 2:
        raise UsageError('STORES must name at least two stores, e.g. STORES="redis memcached"')
    return stores


def store_order(stores: list[str], round_no: int) -> list[str]:
    return stores if round_no % 2 else list(reversed(stores))


def run_compare(
    s: Settings,
    stores: list[str],
    progress: Callable[[str, float], None],
    log: Callable[[str], None],
) -> tuple[Path, dict[str, dict], str]:
    """Run every round; returns (the compare directory, each store's final summary,
    the overall status). Stops at the first round that does not complete."""
    from hscale.sweep import run_sweep  # here: the CLI checks STORES without scipy's import

    compare_id = new_run_id(f"compare-{s.scenario}")
    cdir = Path(s.results) / compare_id
    per_store = {
        store: dataclasses.replace(s, store=store, trials=1, ci_target=0.0) for store in stores
    }
    # A store this runtime cannot start is a usage error before anything runs.
    name = runtimes.resolve(s.runtime)
    can = store_registry.supported(name)
    missing = [store for store in stores if store not in can]
    if missing:
        raise UsageError(
            f"the {name} runtime cannot start {', '.join(missing)} (it can: {', '.join(can)})"
        )
    for ss in per_store.values():  # APP with STORE=memory, say: refused before any round
        target.resolve(ss)
    cdir.mkdir(parents=True)
    write_json(
        cdir / "compare-plan.json",
        {"compare_id": compare_id, "stores": stores, "rounds": s.trials, "config": s.as_dict()},
    )
    summaries: dict[str, dict] = {}
    rounds = s.trials
    per_round = len(stores) * len(s.sweep) * (s.warmup + s.duration + 6.0)
    status = "complete"
    for k in range(1, rounds + 1):
        for i, store in enumerate(store_order(stores, k)):
            run_id = f"{compare_id}-{store}"
            prior = summaries.get(store)
            rd = RunDir.reopen(cdir / store, run_id) if prior else RunDir(cdir, run_id, store)
            ss = per_store[store]
            runtime = runtimes.create(ss, run_id, rd.path / "runtime")
            try:
                runtime.preflight()
            except BaseException:
                runtime.stop()  # nothing started, but the runtime made its temporary directory
                raise
            log(f"round {k}/{rounds}: {store}")
            base = ((k - 1) * len(stores) + i) * per_round / len(stores)

            def update(text: str, done: float, label: str = f"round {k} {store}", base=base):
                progress(f"{label}: {text}", base + done)

            plan = {"trials": rounds, "ci_target": 0.0, "max_trials": rounds}
            summary = run_sweep(ss, rd, runtime, update, log, prior=prior or {"trial_plan": plan})
            summaries[store] = summary
            if summary["status"] != "complete":
                return cdir, summaries, summary["status"]
    return cdir, summaries, status


def sub_runs(cdir: Path, stores: list[str]) -> list[tuple[str, Path]]:
    """The sub-runs that hold at least one trial, in the order given."""
    return [
        (s, cdir / s)
        for s in stores
        if (cdir / s / "summary.json").is_file() and load_summary(cdir / s)["trials"]
    ]
