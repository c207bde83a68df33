"""`hscale cleanup` (`make cleanup`): remove what runs that were killed (SIGKILL, OOM, a
lost terminal) left behind, and nothing of a run still going.

A run is live while its harness's pid (runlock's registry) runs. Everything a run
starts carries its run id: processes in their environment (HSCALE_RUN_ID), containers,
networks and volumes in their compose project or stack name, cgroups and temporary
directories in their names. Anything of a run id that is not live goes.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from pathlib import Path

import psutil

from hscale import runlock
from hscale.cgroups import ROOT as CGROUP_ROOT
from hscale.procs import RUN_MARKER

RUN_ID = re.compile(r"\d{8}-\d{6}-[A-Za-z0-9_-]+-[0-9a-f]{6}")


def cleanup(only: str | None = None) -> list[str]:
    """Remove every trace of runs that are not live (only: of that one run, if not live)."""
    live = set(runlock.live_runs())
    if only is not None and only in live:
        return []
    gone = (lambda run: run == only) if only else (lambda run: run not in live)
    removed = _processes(gone)
    removed += _nginx(gone)
    removed += _cgroups(gone)
    removed += _tmp(gone)
    removed += _docker(only)
    for entry in runlock.dead_entries():
        if gone(entry["run_id"]):
            Path(entry["entry"]).unlink(missing_ok=True)
    return removed


PROJECT_CHARS = 40  # swarm names `<stack>_<service>` at most 63 characters


def project_of(run_id: str) -> str:
    """The compose project (and swarm stack) name of a run: "hscale" and the run id's
    letters and digits, its middle cut so that the stack's service names stay within
    swarm's 63 characters (the time in front and the random suffix at the end are kept,
    so it stays unique)."""
    name = "hscale" + "".join(c for c in run_id if c.isalnum()).lower()
    if len(name) <= PROJECT_CHARS:
        return name
    return name[: PROJECT_CHARS - 6] + name[-6:]


def _processes(gone) -> list[str]:
    out, killed = [], []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            run = proc.environ().get(RUN_MARKER)
        except (psutil.Error, OSError):
            continue
        if run and RUN_ID.fullmatch(run) and gone(run) and proc.pid != psutil.Process().pid:
            with contextlib.suppress(psutil.Error):
                proc.kill()
                killed.append(proc)
                out.append(f"process {proc.pid} ({proc.info['name']}) of run {run}")
    psutil.wait_procs(killed, timeout=5)  # gone before their cgroups are removed
    return out


def _cgroups(gone) -> list[str]:
    out = []
    roots = [CGROUP_ROOT, *(CGROUP_ROOT / c for c in ("cpu", "cpuacct", "cpu,cpuacct"))]
    for root in roots:
        for group in sorted(root.glob("hscale-*")) if root.is_dir() else []:
            run = group.name.removeprefix("hscale-")
            if not RUN_ID.fullmatch(run) or not gone(run):
                continue
            if _remove_tree(group):
                out.append(f"cgroup {group}")
    return out


def _nginx(gone) -> list[str]:
    """nginx rewrites its environment (no run id there): its pid file in the run's
    temporary directory names it."""
    out = []
    for pidfile in _run_tmp_dirs(gone, "*/nginx.pid"):
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            master = psutil.Process(int(pidfile.read_text().split()[0]))
            group = [master, *master.children(recursive=True)]
            for proc in group:
                proc.kill()
            psutil.wait_procs(group, timeout=5)
            out.append(f"nginx {master.pid} of {pidfile.parent.name}")
    return out


def _run_tmp_dirs(gone, pattern: str) -> list[Path]:
    dirs = dict.fromkeys([Path(tempfile.gettempdir()), Path("/tmp")])  # postgres' fallback
    found = []
    for path in (p for d in dirs for p in d.glob(f"hscale-{pattern}")):
        m = RUN_ID.search(str(path))
        if m and gone(m.group(0)):
            found.append(path)
    return found


def _remove_tree(group: Path) -> bool:
    """A cgroup and its children, deepest first, after killing what still runs in them (a
    cgroup's files cannot be deleted: only its empty directories can)."""
    for child in (p for p in group.iterdir() if p.is_dir()):
        _remove_tree(child)
    procs_file = group / "cgroup.procs"
    with contextlib.suppress(OSError, ValueError):
        pids = [int(x) for x in procs_file.read_text().split()]
        procs = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=5)
    try:
        group.rmdir()
        return True
    except OSError:
        return False


def _tmp(gone) -> list[str]:
    out = []
    for path in _run_tmp_dirs(gone, "*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            out.append(f"directory {path}")
    return out


def _docker(only: str | None) -> list[str]:
    """Containers, networks and volumes of compose projects (and swarm stacks) named
    hscale<run id> of runs that are gone. A project name keeps only the run id's letters
    and digits, so the registry's live runs decide which projects stay."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception:  # noqa: BLE001  (no engine: nothing of ours there)
        return []
    live = {project_of(r) for r in runlock.live_runs()}

    def doomed(project: str) -> bool:
        if only is not None:
            return project == project_of(only)
        return project.startswith("hscale") and project not in live

    out = []
    label = "com.docker.compose.project"
    stack = "com.docker.stack.namespace"
    for c in client.containers.list(all=True, ignore_removed=True):
        project = c.labels.get(label) or c.labels.get(stack) or ""
        if doomed(project):
            with contextlib.suppress(Exception):
                c.remove(force=True, v=True)
                out.append(f"container {c.name}")
    for svc in client.services.list() if _swarm(client) else []:
        name = svc.attrs.get("Spec", {}).get("Labels", {}).get(stack, "")
        if doomed(name):
            with contextlib.suppress(Exception):
                svc.remove()
                out.append(f"service {svc.name}")
    for net in client.networks.list():
        project = (net.attrs.get("Labels") or {}).get(label) or (net.attrs.get("Labels") or {}).get(
            stack, ""
        )
        if project and doomed(project):
            with contextlib.suppress(Exception):
                net.remove()
                out.append(f"network {net.name}")
    for vol in client.volumes.list():
        project = (vol.attrs.get("Labels") or {}).get(label, "")
        if doomed(project):
            with contextlib.suppress(Exception):
                vol.remove(force=True)
                out.append(f"volume {vol.name}")
    return out


def _swarm(client) -> bool:
    try:
        return client.info().get("Swarm", {}).get("LocalNodeState") == "active"
    except Exception:  # noqa: BLE001
        return False
