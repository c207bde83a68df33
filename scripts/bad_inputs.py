"""Tries each bad input the hardening issue listed and prints a markdown table of the
answers (exit code and the one line hscale printed); nothing starts for any of them.
Run: .venv/bin/python scripts/bad_inputs.py"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HSCALE = [sys.executable, "-m", "hscale.cli"]
TMP = Path(tempfile.mkdtemp())
(TMP / "big.csv").write_text("n,throughput\n" + "1,100\n" * 10_001)
(TMP / "dup.csv").write_text("n,trial,throughput\n1,1,100\n1,1,101\n2,1,190\n")

CASES = [
    ("bench", {"RESULTS": "/proc/nope"}),
    ("bench", {"RESULTS": "/tmp/a b"}),
    ("bench", {"RESULTS": "/tmp/x;error_log /etc/passwd"}),
    ("bench", {"DURATION": "9" * 400}),
    ("bench", {"DURATION": "1e9"}),
    ("bench", {"WARMUP": "99999"}),
    ("bench", {"LOADGEN_CPUS": "inf"}),
    ("bench", {"REPLICAS": "0"}),
    ("bench", {"SWEEP": "1 1 2"}),
    ("bench", {"PORT": "70000"}),
    ("bench", {"PUBLISH_ADDRESS": "192.0.2.77"}),
    ("bench", {"STORE": "mongo"}),
    ("bench", {"APP": "/nonexistent"}),
    ("faults", {"FAULT": "unplug"}),
    ("analyze", {"CSV": str(TMP / "big.csv")}),
    ("analyze", {"CSV": str(TMP / "dup.csv")}),
]


def main() -> None:
    print("| command | input | exit | answer |\n|---|---|---|---|")
    for command, knobs in CASES:
        argv = [*HSCALE, command]
        if command == "analyze":
            argv.append(knobs["CSV"])
            shown = f"a CSV of {Path(knobs['CSV']).read_text().count(chr(10)) - 1:,} rows"
        else:  # as `make bench KNOB=value` passes them
            argv += [a for k, v in knobs.items() for a in (f"--{k.lower().replace('_', '-')}", v)]
            shown = " ".join(f"{k}={v[:30]}{'…' * (len(v) > 30)}" for k, v in knobs.items())
        # Each must fail before anything starts: a timeout here means one did not.
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        line = (done.stderr.strip() or done.stdout.strip()).splitlines()
        answer = line[-1] if line else ""
        print(f"| `{command}` | `{shown}` | {done.returncode} | {answer.replace('|', '/')} |")
    shutil.rmtree(TMP)


if __name__ == "__main__":
    main()
