"""The results directory: one new folder per run, never overwritten, written atomically.

Layout (documented field by field in results/README.md):
  results/<run-id>/manifest.json     provenance: code, versions, host, config, times
  results/<run-id>/summary.json      schema_version 2: status, every trial, one point per N,
                                     the scaling analysis
  results/<run-id>/points/n<N>/t<k>/ raw Locust CSV/JSON, hscale's tally, logs of trial k
  results/<run-id>/runtime/          generated configs and component logs
  results/<run-id>/throughput.png    throughput vs N against the ideal line
  results/latest -> <run-id>
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from hscale.analysis.record import SCHEMA_VERSION, STATUSES, read_summary


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_json(path: Path, payload: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    # allow_nan=False: NaN and Infinity are not JSON; other readers would refuse the file.
    text = json.dumps(finite(payload), indent=2, sort_keys=False, default=str, allow_nan=False)
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def finite(value: Any) -> Any:
    """NaN and infinities as null, all the way down."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def new_run_id(label: str) -> str:
    """Time-sortable and unique: a random suffix keeps two runs in one second apart."""
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-")[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{label}-{secrets.token_hex(3)}"


class RunDir:
    def __init__(self, root: Path, run_id: str, name: str | None = None) -> None:
        """A new run directory root/<name or run_id>; `name` gives a sub-run (one store
        of a comparison) a short directory name while run_id stays unique."""
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.run_id, self.path = root, run_id, root / (name or run_id)
        self.path.mkdir()  # exclusive: raises if the run exists, so nothing is overwritten
        (self.path / "points").mkdir()
        (self.path / "runtime").mkdir()

    @classmethod
    def reopen(cls, path: Path, run_id: str) -> RunDir:
        """A run directory this process made earlier, to add trials to (a comparison's
        later rounds); never one of another run."""
        rd = cls.__new__(cls)
        rd.root, rd.run_id, rd.path = path.parent, run_id, path
        return rd

    def trial_dir(self, n: int, trial: int, attempt: int = 0) -> Path:
        """points/n<N>/t<k>; a trial run again (more Locust workers) gets t<k>.<attempt>."""
        return self.path / "points" / f"n{n}" / (f"t{trial}.{attempt}" if attempt else f"t{trial}")

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.path / "manifest.json", manifest)

    def write_summary(self, summary: dict) -> None:
        assert summary["status"] in STATUSES
        write_json(self.path / "summary.json", {"schema_version": SCHEMA_VERSION, **summary})

    def point_to_latest(self) -> None:
        """Point results/latest at this run (atomically replacing the old link)."""
        link, tmp = self.root / "latest", self.root / f".latest-{self.run_id}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.run_id)
        os.replace(tmp, link)


def load_summary(run: Path) -> dict:
    """The run's summary.json, validated (analysis/record.py): RecordError, one line."""
    return read_summary(run)
