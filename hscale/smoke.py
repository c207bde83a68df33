"""Before measuring your app: its Locust file runs for a few seconds, and every route it
hit must have answered without a server error. A route that fails stops the sweep with
its name, status and count, instead of N trials of errors."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hscale.verify import VerificationError

SMOKE_S = 4.0
# Locust's failure text carries the status: "HTTPError('500 Server Error ...')",
# "BadStatusCode('http://...', code=502)"; a refused or reset connection has none.
SERVER_ERROR = re.compile(r"(?<!\d)5\d\d(?!\d)|code=5\d\d|Connection|Refused|Reset|Timeout", re.I)

Load = Callable[[int, float, float, Path, Callable[[str], None]], Any]


def check_routes(load: Load, n: int, out: Path) -> list[dict[str, str]]:
    """Run the Locust file briefly at N; raise VerificationError naming every route that
    answered 5xx or no answer at all. Returns the routes it hit (method, name, requests)."""
    load(n, SMOKE_S, 0.0, out, lambda phase: None)
    hit = routes(out / "locust_stats.csv")
    if not hit:
        raise VerificationError(
            f"the Locust file made no request in {SMOKE_S:g} s; see {out / 'locust.log'}"
        )
    bad = server_errors(out / "locust_failures.csv")
    if bad:
        raise VerificationError("routes failing before any load: " + "; ".join(bad))
    return hit


def routes(stats_csv: Path) -> list[dict[str, str]]:
    """(method, name, requests) of every route in Locust's stats, the total row left out."""
    if not stats_csv.is_file():
        return []
    with stats_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {"method": r["Type"], "name": r["Name"], "requests": r["Request Count"]}
        for r in rows
        if r.get("Name") != "Aggregated" and r.get("Type")
    ]


def server_errors(failures_csv: Path) -> list[str]:
    """'GET /path: <error> (k times)' for each failure that is a server's, not a 4xx."""
    if not failures_csv.is_file():
        return []
    with failures_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        f"{r['Method']} {r['Name']}: {r['Error'][:160]} ({r['Occurrences']} times)"
        for r in rows
        if SERVER_ERROR.search(r.get("Error", ""))
    ]
