"""`hscale`: run a scaling sweep, show or re-plot its results, list the knobs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

from hscale import paths, runtimes, settings
from hscale.analysis.record import OLDEST_ANALYZABLE, RecordError, read_manifest, read_summary
from hscale.console import console, err_console, print_summary, sweep_progress
from hscale.procs import StartupError
from hscale.results import RunDir, load_summary, new_run_id

EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
MAX_CSV_BYTES = 4 << 20  # `hscale analyze`: far above any sweep's trials, far below memory
FAULTS_DURATION_S = 20  # `hscale faults` default window: before, the fault, the recovery


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        print(f"hscale: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _flag(knob: settings.Knob) -> str:
    return "--" + knob.name.lower().replace("_", "-")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(prog="hscale", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    bench = sub.add_parser("bench", help="sweep N replicas and measure throughput at each")
    stores = sub.add_parser(
        "compare-stores",
        help="the same sweep per data store, in interleaved rounds, and their comparison",
    )
    stores.add_argument(
        "--stores", required=True, metavar="LIST", help='stores to compare, e.g. "redis memcached"'
    )
    faults = sub.add_parser(
        "faults", help="kill, pause and restart parts of the stack under load, and measure it"
    )
    check = sub.add_parser(
        "loadgen-check",
        help="hscale's Locust against wrk at N = 1 and REPLICAS: how much the load generator "
        "bends X(N) and E(N) on this host",
    )
    for p in (bench, stores, faults, check):
        for knob in settings.KNOBS:
            default = knob.default if knob.default is not None else knob.derived
            text = f"{knob.help} (default {default})"
            help_text = text.replace("%", "%%")  # argparse %-formats help
            p.add_argument(_flag(knob), dest=knob.name, metavar="VALUE", help=help_text)
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a knob by its name, as `make bench NAME=VALUE` passes it",
        )
    for name, text in (
        ("show", "print the results table of a run"),
        ("plot", "redraw throughput.png of a run from its summary.json"),
        ("report", "regenerate report.html, report.md and figures/ of a run from its files"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "run",
            nargs="?",
            default=str(paths.RESULTS_DIR / "latest"),
            help="run directory (default results/latest)",
        )
    analyze = sub.add_parser("analyze", help="fit the scaling models to a run or a CSV")
    analyze.add_argument(
        "path",
        nargs="?",
        default=str(paths.RESULTS_DIR / "latest"),
        help="run directory (default results/latest) or CSV with columns n, throughput",
    )
    analyze.add_argument("--json", action="store_true", help="print the Analysis as JSON")
    compare = sub.add_parser("compare", help="compare runs: throughput vs N and ratios per N")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run directories, baseline first")
    compare.add_argument(
        "--out",
        metavar="DIR",
        help="new directory to write (default compare-<time>-<random> beside the first run)",
    )
    compare.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NAME=RUN",
        help="name a run in tables and figures (default: its directory name)",
    )
    sub.add_parser("knobs", help="list every knob with its default")
    clean = sub.add_parser(
        "cleanup",
        help="remove what killed runs left: processes, containers, networks, cgroups, temp files",
    )
    clean.add_argument("--run", metavar="RUN_ID", help="only what this run left (if not live)")
    cluster = sub.add_parser(
        "cluster", help="a test swarm of Docker engines in containers, with a registry"
    )
    actions = cluster.add_subparsers(dest="action", required=True, parser_class=Parser)
    cluster_up = actions.add_parser("up", help="start it (or say it is up): make cluster NODES=3")
    cluster_up.add_argument("--nodes", default="3", metavar="N", help="engines, 2 to 6 (default 3)")
    cluster_up.add_argument(
        "--offline", default="auto", choices=("auto", "0", "1"),
        help="build its images without a registry: auto (when a pull fails), 0, 1",
    )  # fmt: skip
    actions.add_parser("down", help="remove its containers, networks and volumes")
    init = sub.add_parser("init", help="write a starter Locust file from your app's URL map")
    init.add_argument("app", metavar="APP", help="your project: a WSGI app and its requirements")
    init.add_argument(
        "--app-module", metavar="M", help="its WSGI app, module:app or package:create_app()"
    )
    init.add_argument("--out", metavar="FILE", help="where to write (default APP/locustfile.py)")
    init.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    export = sub.add_parser("export", help="write the stack for another orchestrator")
    formats = export.add_subparsers(dest="format", required=True, parser_class=Parser)
    from hscale import export_k8s

    export_k8s.add_arguments(
        formats.add_parser("k8s", help="Kubernetes manifests (validated in the tests, not run)")
    )
    return parser.parse_args(argv)


def knob_values(args: argparse.Namespace) -> dict[str, str | None]:
    """Knobs from --set NAME=VALUE (what make passes), overridden by their own flags."""
    names = {k.name for k in settings.KNOBS}
    values: dict[str, str | None] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or name not in names:
            raise settings.UsageError(
                f"unknown knob {name!r}; knobs are: {', '.join(k.name for k in settings.KNOBS)}"
            )
        values[name] = value
    for k in settings.KNOBS:
        if getattr(args, k.name) is not None:
            values[k.name] = getattr(args, k.name)
    return values


_HELD: list = []  # this command's RunLocks, released when it returns (or by the kernel)


def hold_run(s: settings.Settings, run_id: str) -> None:
    """Lock the run's ports and results directory, and register it for `hscale cleanup`."""
    from hscale import runlock
    from hscale.cleanup import project_of

    runtime = runtimes.resolve(s.runtime)
    ports = {"PORT, nginx": s.port}
    if runtime == "local":
        ports |= {f"APP_PORT+{i}, replica {i + 1}": s.app_port + i for i in range(max(s.sweep))}
        ports["STORE_PORT"] = s.store_port
    lock = runlock.lock_run(run_id, ports, s.results)
    lock.register(
        runtime=runtime,
        project=project_of(run_id),
        tmp_prefix=f"hscale-{run_id}-",
        cgroup=f"hscale-{run_id}",
    )
    _HELD.append(lock)


def results_dir(s: settings.Settings) -> None:
    """RESULTS exists and takes a new run directory, or a one-line usage error."""
    try:
        Path(s.results).mkdir(parents=True, exist_ok=True)
        probe = Path(s.results) / f".hscale-write-test-{os.getpid()}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise settings.UsageError(
            f"RESULTS={s.results}: cannot create a run directory there ({exc.strerror})"
        ) from None


def _check_loadgen_cap(runtime: runtimes.Runtime) -> None:
    """LOADGEN_CPUS is a cgroup quota on Locust running on this host."""
    from hscale import cgroups

    mode, reason = cgroups.detect()
    if mode == "none":
        raise settings.UsageError(f"LOADGEN_CPUS needs a cgroup CPU quota: {reason}")
    if runtime.loadgen_launcher() is not None:
        raise settings.UsageError(
            f"LOADGEN_CPUS caps Locust on this host, but the {runtime.name} runtime runs it "
            "in containers with LOADGEN_WORKERS; leave one of them unset"
        )


def prepare(
    args: argparse.Namespace, prefix: str = "", defaults: dict[str, str] | None = None
) -> tuple:
    """Settings, target, runtime (preflighted) and run directory of a bench, faults or
    loadgen-check run: every usage error before anything starts."""
    from hscale import target as targets

    values = knob_values(args)
    for name, value in (defaults or {}).items():
        if values.get(name) is None:
            values[name] = value
    s = settings.load(values)
    if prefix == "faults-" and "restart-store" in s.faults and s.store in ("none", "memory"):
        raise settings.UsageError(f"restart-store needs a store server; STORE={s.store} has none")
    results_dir(s)
    tgt = targets.resolve(s)  # APP, IMAGE, LOCUSTFILE: usage errors before anything starts
    if prefix == "loadgen-check-":
        from hscale.loadgen_check import check_usable

        check_usable(s, tgt.reference)
    what = targets.scenario_name(tgt, s)
    root = Path(s.results)
    run_id = new_run_id(prefix + (what if tgt.reference else f"{tgt.name}-{Path(what).stem}"))
    hold_run(s, run_id)  # a second run on these ports or RESULTS refuses here
    runtime = runtimes.create(s, run_id, root / run_id / "runtime")
    try:
        if s.loadgen_cpus:
            _check_loadgen_cap(runtime)
        runtime.preflight()  # usage errors (busy port, missing binary) before anything starts
    except BaseException:
        runtime.stop()  # nothing started, but the runtime made its temporary directory
        raise
    return s, tgt, what, runtime, RunDir(root, run_id)


def cmd_cleanup(args: argparse.Namespace) -> int:
    from hscale.cleanup import cleanup

    removed = cleanup(Path(args.run).name if args.run else None)
    for line in removed:
        console.print(f"removed {line}", highlight=False, markup=False)
    console.print(f"hscale cleanup: {len(removed)} thing(s) removed", highlight=False)
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from hscale import cluster

    def log(line: str) -> None:
        err_console.print(line, highlight=False, markup=False)

    if args.action == "down":
        removed = cluster.down(log)
        console.print(f"hscale cluster down: {len(removed)} thing(s) removed", highlight=False)
        return 0
    state, started = cluster.up(cluster.parse_nodes(args.nodes), args.offline, log)
    if not started:
        console.print("hscale cluster: already up", highlight=False)
    console.print(cluster.describe(state), highlight=False, markup=False)
    return 0


def cmd_faults(args: argparse.Namespace) -> int:
    # DURATION: room for the fault and the recovery after it
    s, tgt, what, runtime, rd = prepare(args, "faults-", {"DURATION": str(FAULTS_DURATION_S)})
    from hscale.faults import run_faults  # after the checks, as in cmd_bench

    n = s.fault_n or max(s.sweep)
    at = s.fault_at if s.fault_at is not None else s.duration / 3
    err_console.print(
        f"hscale: faults {', '.join(s.faults)} at N={n}, one trial each of {s.warmup:g}s "
        f"warm-up + {s.duration:g}s, struck {at:g}s "
        f"into the window; {what}, store {s.store}, runtime {runtime.name} -> {rd.path}",
        highlight=False,
    )
    with sweep_progress(len(s.faults) * (s.warmup + s.duration + 10)) as update:
        doc = run_faults(s, rd, runtime, update, lambda m: err_console.print(m, highlight=False))
    for f in doc["faults"]:
        console.print(f"- {f['verdict']}", highlight=False)
        if f.get("durability"):
            console.print(f"  {f['durability']}", highlight=False)
    if doc.get("error"):
        err_console.print(f"{doc['status']}: {doc['error']}", highlight=False, markup=False)
    console.print(f"report: {rd.path / 'faults.html'}", highlight=False)
    return {"complete": 0, "interrupted": EXIT_INTERRUPTED}.get(doc["status"], EXIT_FAILED)


def cmd_bench(args: argparse.Namespace) -> int:
    s, tgt, what, runtime, rd = prepare(args)
    # After the checks: the report's imports (matplotlib, scipy) take a second, which a
    # usage error should not wait for.
    from hscale.analysis.report_files import write_report
    from hscale.sweep import OVERHEAD_S, run_sweep

    err_console.print(
        f"hscale: sweep N={' '.join(map(str, s.sweep))}, "
        + (f"scenario {what}" if tgt.reference else f"{tgt.kind} {tgt.name} loaded by {what}")
        + f", store {s.store}, runtime "
        f"{runtime.name}, {s.replica_cpus:g} CPU/replica ({s.replica_cpus_source}), "
        f"{s.trials} trial(s) of {s.warmup:g}s warm-up + {s.duration:g}s per N"
        + (
            f", more until each 95% CI is within +-{s.ci_target:.0%}"
            + (f" or {s.time_budget:g} s have passed" if s.time_budget else "")
            if s.ci_target
            else ""
        )
        + f" -> {rd.path}",
        highlight=False,
    )
    for n in s.sweep:
        if not s.fits_host(n):
            err_console.print(
                f"[yellow]warning:[/yellow] N={n} asks {n * s.replica_cpus:g} CPU for "
                f"replicas + {settings.RESERVED_CPUS:g} reserved on {s.host_cpus} CPUs: "
                "that point will be marked oversubscribed (not valid)"
            )
    total = len(s.sweep) * s.trials * (s.warmup + s.duration + OVERHEAD_S)
    if s.ci_target:
        total = max(total, s.time_budget or total)
    with sweep_progress(total) as update:
        summary = run_sweep(
            s, rd, runtime, update, log=lambda msg: err_console.print(msg, highlight=False)
        )
    print_summary(summary, str(rd.path))
    code = {"complete": 0, "interrupted": EXIT_INTERRUPTED}.get(summary["status"], EXIT_FAILED)
    if not summary["trials"]:
        return code  # nothing measured: nothing to report
    try:  # from what is on disk, as `make report` would: the results are already safe
        console.print(f"report: {write_report(rd.path)}", highlight=False)
    except Exception as exc:  # noqa: BLE001  (reported; the measurements stand)
        err_console.print(f"hscale: the report failed ({exc}); retry: make report RUN={rd.path}")
        return code or EXIT_FAILED
    return code


def cmd_loadgen_check(args: argparse.Namespace) -> int:
    s, _tgt, _what, runtime, rd = prepare(args, "loadgen-check-", {"SCENARIO": "json"})
    from hscale import loadgen_check  # after the checks, as in cmd_bench

    largest = max(s.sweep)
    err_console.print(
        f"hscale: loadgen-check: wrk against hscale's Locust on GET /json at N = 1 and "
        f"{largest}, {s.trials} round(s) of {s.warmup:g}s + {s.duration:g}s each, runtime "
        f"{runtime.name} -> {rd.path}",
        highlight=False,
    )
    doc = loadgen_check.run(s, rd, runtime, lambda m: err_console.print(m, highlight=False))
    for line in loadgen_check.table(doc):
        console.print(line, highlight=False, markup=False)
    if doc.get("error"):
        err_console.print(f"{doc['status']}: {doc['error']}", highlight=False, markup=False)
    console.print(f"results: {rd.path / loadgen_check.FILE}", highlight=False)
    return {"complete": 0, "interrupted": EXIT_INTERRUPTED}.get(doc["status"], EXIT_FAILED)


def cmd_compare_stores(args: argparse.Namespace) -> int:
    from hscale.compare_stores import parse_stores

    values = knob_values(args)
    if values.get("STORE"):
        raise settings.UsageError("name the stores to compare in STORES, not STORE")
    s = settings.load(values)
    results_dir(s)
    stores = parse_stores(args.stores)
    # After the checks, as in cmd_bench.
    from hscale.analysis.compare import comparison
    from hscale.analysis.compare_files import load_runs, write_files
    from hscale.analysis.compare_render import ratio_table
    from hscale.analysis.report_files import write_report
    from hscale.compare_stores import run_compare, sub_runs
    from hscale.sweep import OVERHEAD_S

    err_console.print(
        f"hscale: {s.trials} round(s) of N={' '.join(map(str, s.sweep))} for each of "
        f"{', '.join(stores)}, scenario {s.scenario}, {s.replica_cpus:g} CPU/replica",
        highlight=False,
    )
    total = len(stores) * s.trials * len(s.sweep) * (s.warmup + s.duration + OVERHEAD_S)
    with sweep_progress(total) as update:
        cdir, summaries, status = run_compare(
            s, stores, update, log=lambda msg: err_console.print(msg, highlight=False)
        )
    for store, summary in summaries.items():
        print_summary(summary, str(cdir / store))
    code = {"complete": 0, "interrupted": EXIT_INTERRUPTED}.get(status, EXIT_FAILED)
    runs = sub_runs(cdir, stores)
    try:  # from what is on disk: the measurements are already safe
        for _, path in runs:
            write_report(path)
        if len(runs) >= 2:
            data = comparison(load_runs(runs))
            page = write_files(data, cdir / "comparison")
            console.print(ratio_table(data), highlight=False)
            console.print(f"\n[bold]ranking[/bold]: {data['ranking']['text']}", highlight=False)
            console.print(f"comparison: {page}", highlight=False)
    except Exception as exc:  # noqa: BLE001  (reported; the measurements stand)
        err_console.print(f"hscale: the reports failed ({type(exc).__name__}: {exc})")
        code = code or EXIT_FAILED
    console.print(f"results: {cdir}", highlight=False)
    return code


def _run_path(raw: str) -> Path:
    path = Path(raw)
    if not (path / "summary.json").is_file():
        raise settings.UsageError(f"{raw} is not a run directory (no summary.json)")
    return path.resolve()


def _load_summary(path: Path) -> dict:
    try:
        return load_summary(path)
    except RecordError as exc:  # not JSON, another schema_version, a field missing or wrong
        raise settings.UsageError(str(exc)) from None


def cmd_show(args: argparse.Namespace) -> int:
    path = _run_path(args.run)
    print_summary(_load_summary(path), str(path))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from hscale.analysis.plot import throughput_plot

    path = _run_path(args.run)
    summary = _load_summary(path)
    console.print(str(throughput_plot(summary, read_manifest(path), path / "throughput.png")))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hscale.analysis.report_files import write_report

    path = _run_path(args.run)
    _load_summary(path)  # another schema_version is a usage error, not a traceback
    print(write_report(path))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from hscale.analysis import compare, compare_files, compare_render

    if len(args.runs) < 2:
        raise settings.UsageError(f"compare needs at least 2 runs, got {len(args.runs)}")
    runs = [_run_path(raw) for raw in args.runs]
    labels = {path: path.name for path in runs}
    for item in args.label:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise settings.UsageError(f"--label takes NAME=RUN, got {item!r}")
        if Path(raw).resolve() not in labels:
            raise settings.UsageError(f"--label {item}: {raw} is not one of the runs compared")
        labels[Path(raw).resolve()] = name.strip()
    out = Path(args.out) if args.out else runs[0].parent / compare_files.new_compare_id()
    try:
        data = compare.comparison(compare_files.load_runs([(labels[p], p) for p in runs]))
        page = compare_files.write_files(data, out)
    except compare.CompareError as exc:
        raise settings.UsageError(str(exc)) from None
    print(compare_render.ratio_table(data))
    print(page)
    return 0


def _measurements(path: Path) -> tuple[list, str, list | None, int]:
    """(measurements, what they are, points, parameters fitted beyond the N means) of a
    run directory (summary.json schema 1 or 2) or a CSV."""
    from hscale.analysis.analyze import fit_input, fitted_params, measurements_from_csv

    if path.is_dir():
        try:
            summary = read_summary(path, oldest=OLDEST_ANALYZABLE)
            return *fit_input(summary), summary.get("points"), fitted_params(summary)
        except ValueError as exc:  # RecordError is one
            raise settings.UsageError(str(exc)) from None
    if not path.is_file():
        raise settings.UsageError(f"{path}: no such run directory or CSV file")
    if path.stat().st_size > MAX_CSV_BYTES:
        raise settings.UsageError(
            f"{path}: {path.stat().st_size:,} bytes; at most {MAX_CSV_BYTES:,}"
        )
    try:
        return measurements_from_csv(path.read_text()), "every row of the CSV", None, 0
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise settings.UsageError(f"{path}: {exc}") from None


def cmd_analyze(args: argparse.Namespace) -> int:
    from hscale.analysis.analyze import analyze, render_text

    measurements, fit_on, points, fitted = _measurements(Path(args.path))
    try:
        result = analyze(measurements, points, fit_on, fitted)
    except ValueError as exc:
        raise settings.UsageError(f"{args.path}: {exc}") from None
    if args.json:
        print(json.dumps({**result, "source": args.path}, allow_nan=False))
    else:
        print(render_text(result, args.path))
    return 0


def cmd_knobs(_args: argparse.Namespace) -> int:
    for k in settings.KNOBS:
        default = k.default if k.default is not None else f"({k.derived})"
        print(f"{k.name:<18} {default:<32} {k.help}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from hscale.starter import write_starter

    _, summary = write_starter(args.app, args.app_module, args.out, args.force)
    print(summary)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hscale.export_k8s import export

    print(export(knob_values(args), args.out, args.image_registry))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handler = {
        "bench": cmd_bench,
        "faults": cmd_faults,
        "loadgen-check": cmd_loadgen_check,
        "show": cmd_show,
        "plot": cmd_plot,
        "knobs": cmd_knobs,
        "analyze": cmd_analyze,
        "report": cmd_report,
        "compare": cmd_compare,
        "compare-stores": cmd_compare_stores,
        "init": cmd_init,
        "cleanup": cmd_cleanup,
        "cluster": cmd_cluster,
        "export": cmd_export,
    }
    try:
        return handler[args.command](args)
    except settings.UsageError as exc:
        print(f"hscale: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StartupError as exc:  # log tails may hold "[/...]": never read as markup
        err_console.print(f"hscale: could not start: {exc}", highlight=False, markup=False)
        return EXIT_FAILED
    except KeyboardInterrupt:
        err_console.print("hscale: interrupted", highlight=False)
        return EXIT_INTERRUPTED
    finally:
        for lock in _HELD:
            lock.release()
        _HELD.clear()


if __name__ == "__main__":
    sys.exit(main())
