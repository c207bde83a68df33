"""STORE on the local runtime: a short kv sweep (N = 1, 2) through the `hscale` console
script with memcached, postgres and memory, each on ports of its own. What the manifest
records, that a shared store loses no write while memory does at N = 2 (the point of
it), and that nothing is left behind: no marked process, cgroup, temporary directory or
listening store port."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hscale_testkit import (
    ROOT,
    Ports,
    cgroup_dirs,
    clean_up_run,
    hscale_cmd,
    hscale_env,
    run_dirs,
    run_hscale,
    wait_no_marked_processes,
)

from hscale import settings
from hscale.runtimes import binaries, local_stores
from hscale.settings import UsageError

pytestmark = pytest.mark.e2e

VERSION = {"memcached": r"^memcached 1\.6\.", "postgres": r"\(PostgreSQL\) 15\."}


@dataclass
class Run:
    store: str
    ports: Ports
    tmpdir: Path
    path: Path
    done: subprocess.CompletedProcess[str]

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def summary(self) -> dict:
        return json.loads((self.path / "summary.json").read_text())

    @property
    def manifest(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text())

    def why(self) -> str:
        d = self.done
        return f"exit {d.returncode}\nstdout:\n{d.stdout[-3000:]}\nstderr:\n{d.stderr[-3000:]}"


@pytest.fixture(scope="module", params=["memcached", "postgres", "memory"])
def run(request, tmp_path_factory) -> Iterator[Run]:
    store = request.param
    base = tmp_path_factory.mktemp(f"store-{store}")
    results, ports = base / "results", Ports(2)
    args = ["bench", "--store", store, "--scenario", "kv", "--sweep", "1 2", "--trials", "1"]
    args += ["--duration", "3", "--warmup", "1", "--results", str(results), *ports.args()]
    try:
        done = run_hscale(args, tmpdir=base / "tmp", timeout=180)
        runs = run_dirs(results)
        assert len(runs) == 1, f"expected one run dir, got {runs}\n{done.stderr[-3000:]}"
        yield Run(store, ports, base / "tmp", runs[0], done)
    finally:  # whatever the tests asserted, leave nothing
        for path in run_dirs(results):
            clean_up_run(path.name)


def test_sweep_completes(run):
    assert run.done.returncode == 0, run.why()
    s = run.summary
    assert s["status"] == "complete", s.get("error")
    assert s["runtime"] == "local" and s["scenario"] == "kv"
    assert [p["replicas"] for p in s["points"]] == [1, 2]
    assert s["leftover_processes"] == [], "teardown missed processes that had to be killed"


def test_manifest_records_the_store(run):
    m = run.manifest
    assert m["config"]["store"] == run.store
    store = m["runtime"]["store"]
    assert store["name"] == run.store
    if run.store == "memory":
        assert store["process"] is None and store["shared"] is False
        assert "not shared" in store["note"]
        return
    assert Path(store["binary"]).name == run.store and os.access(store["binary"], os.X_OK)
    assert re.search(VERSION[run.store], store["version"]), store["version"]
    assert "redis_server" not in m["runtime"]
    if run.store == "postgres":
        assert m["runtime"]["init_store"] == "python -m refapp.init_store"
        assert store["settings"]["fsync"] == "off" and int(store["settings"]["max_connections"])
        assert "scram-sha-256" in store["auth"]
    else:
        assert store["flags"][:4] == ["-l", "127.0.0.1", "-p", str(run.ports.store_port)]


def test_store_cpu_is_a_component_unless_memory(run):
    for t in run.summary["trials"]:
        comps = t["components"]
        if run.store == "memory":
            assert "store" not in comps, sorted(comps)
        else:
            assert comps["store"]["kind"] == "store" and comps["store"]["cpu_cores"] > 0, comps


def test_a_shared_store_loses_no_write_and_memory_does_at_two_replicas(run):
    one, two = run.summary["trials"]  # one trial per N: N = 1, then 2
    assert one["failures"] == 0, one["errors"]  # one replica, one worker: one dict
    assert len(two["per_replica_requests"]) == 2
    if run.store == "memory":
        # a read that lands on the other replica misses what this user wrote: 404s, and
        # far more than the 1% a valid point allows
        assert not two["valid"] and two["failure_rate"] > 0.01, two["notes"]
        assert all("404" in e or "kv read" in e for e in two["errors"]), two["errors"]
        assert any(n.startswith("failures") for n in two["notes"]), two["notes"]
    else:
        assert two["failures"] == 0, two["errors"]


def test_postgres_schema_made_once_and_password_nowhere(run):
    if run.store != "postgres":
        pytest.skip("postgres only")
    init_log = (run.path / "runtime" / "logs" / "init-store.log").read_text()
    assert init_log.count("schema ready") == 1, init_log
    # the run's password is in no file of the run directory: neither in the DSN the
    # replicas get nor in the SQL that created the role (the kv keys are hex too, so
    # look for the password's contexts)
    leak = re.compile(r"hscale:[0-9a-f]{32}@|PASSWORD\s*'[0-9a-f]{32}'", re.I)
    for f in run.path.rglob("*"):
        if f.is_file() and f.suffix != ".png":
            assert not leak.search(f.read_text(errors="replace")), f


def test_nothing_left_behind(run):
    assert wait_no_marked_processes(run.run_id, grace=1.0) == []
    assert cgroup_dirs(run.run_id) == []
    # the run's temporary dir, and postgres's home outside it when TMPDIR was private
    assert [p.name for p in run.tmpdir.glob(f"hscale-{run.run_id}*")] == []
    assert list(Path("/tmp").glob(f"hscale-{run.run_id}*")) == []
    with socket.socket() as s:  # the store's port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", run.ports.store_port))


# -- preflight ----------------------------------------------------------------------------


def test_a_missing_store_binary_is_a_one_line_usage_error(tmp_path):
    """memcached lives in /usr/bin: a PATH without it hides it (nginx is still found in
    /usr/sbin, where hscale also looks)."""
    results = tmp_path / "results"
    env = {**hscale_env(tmp_path / "tmp"), "PATH": str(Path(sys.executable).parent)}
    argv = ["bench", "--store", "memcached", "--sweep", "1", *Ports(1).args()]
    done = subprocess.run(
        [*hscale_cmd(), *argv, "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "memcached not found" in lines[0] and "apt-get install memcached" in lines[0], lines
    assert run_dirs(results) == []


def test_a_missing_postgres_is_a_usage_error_naming_the_package(monkeypatch, tmp_path):
    """Debian keeps postgres out of PATH (/usr/lib/postgresql/<v>/bin): hide both."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binaries, "SBIN", ())
    monkeypatch.setattr(binaries, "POSTGRES_BINDIRS", str(tmp_path / "*" / "bin"))
    s = settings.load({"STORE": "postgres", "RUNTIME": "local"})
    store = local_stores.create(local_stores.StoreRun(s, "x", tmp_path, tmp_path, spawn=None))
    with pytest.raises(UsageError, match=r"apt-get install postgresql`"):
        store.preflight()
