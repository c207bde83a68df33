"""The local runtime: the store (redis-server, memcached, postgres, or none for memory),
N gunicorn replicas of the target (the reference app, or your APP from its own venv) and
nginx as plain processes on 127.0.0.1, each replica under its own cgroup CPU quota where
the OS allows."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from hscale import cgroups, cpusplit, paths, project_env, stores
from hscale.cgroups import CpuCounters, CpuGroup
from hscale.errors import UsageError
from hscale.privileges import as_unprivileged
from hscale.procs import (
    ManagedProcess,
    StartupError,
    child_env,
    port_in_use,
    stop_all,
    tree_cpu_seconds,
    wait_http,
)
from hscale.runtimes import local_stores
from hscale.runtimes.base import Component, Runtime, RuntimeInfo
from hscale.runtimes.binaries import find_binary
from hscale.settings import Settings


def _resume(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGCONT)


NGINX_USER = "nobody nogroup"  # Debian's unprivileged user and group
NGINX_RELOAD_S = 10.0  # how long a reload's old workers may take to finish what they hold

# The app's command that creates the store's schema (idempotent), run once before replicas.
INIT_STORE = ("-m", "refapp.init_store")


@dataclass
class Replica:
    name: str
    port: int
    proc: ManagedProcess
    group: CpuGroup | None


class LocalRuntime(Runtime):
    name = "local"

    def __init__(self, settings: Settings, run_id: str, workdir: Path) -> None:
        self.s, self.run_id, self.workdir = settings, run_id, Path(workdir)
        self.mode, self.reason = cgroups.detect()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"hscale-{run_id}-"))
        self.tmp.chmod(0o711)  # nginx's workers (nobody) reach their temp paths, list nothing
        self.replica_list: list[Replica] = []
        self.store_entry = stores.STORES[settings.store]
        self.store = local_stores.create(
            local_stores.StoreRun(
                settings, run_id, self.tmp, self.workdir / "logs", lambda n, a: self._spawn(n, a)
            )
        )
        self.nginx: ManagedProcess | None = None
        self.python = sys.executable  # the replicas' interpreter: APP's venv for your app
        self._resumers: list[threading.Timer] = []  # pause-replica's SIGCONT timers
        self._starting: list[Replica] = []  # replicas not yet answering
        self.groups: dict[str, CpuGroup] = {}
        self._stopped = False
        self.replicas_run_as = "not started"

    # -- interface -----------------------------------------------------------------
    def preflight(self) -> None:
        self.nginx_bin = find_binary("nginx")
        self.store.preflight()
        if self.target.project is not None:  # your app: its requirements in a venv, once
            self.python = str(project_env.ensure_venv(self.target))
        ports = {"PORT (nginx)": self.s.port}
        if self.store.uses_port:
            ports[f"STORE_PORT ({self.s.store})"] = self.s.store_port
        ports |= {
            f"APP_PORT+{i} (replica {i + 1})": self.s.app_port + i for i in range(max(self.s.sweep))
        }
        for what, port in ports.items():
            host = self.s.publish_address if port == self.s.port else "127.0.0.1"
            if port_in_use(port, host):
                knob = what.split("+")[0].split()[0]
                raise UsageError(
                    f"port {port} ({what}) is already in use on {host}; free it or set {knob}"
                )

    @property
    def endpoint(self) -> str:
        return f"http://{self.s.entry_address}:{self.s.port}"

    def start(self, n: int) -> None:
        self._start_store()
        self.resize(n)

    def resize(self, n: int) -> None:
        """Grow: the new replicas boot side by side (each under its own quota), then nginx
        takes them. Shrink: nginx drops the surplus first and its old workers exit, so no
        request meets a stopped replica, then the surplus stops, all at once."""
        if len(self.replica_list) < n:
            self.replica_list += self._start_replicas(range(len(self.replica_list) + 1, n + 1))
            self._configure_nginx()
            return
        surplus, self.replica_list = self.replica_list[n:], self.replica_list[:n]
        self._configure_nginx()
        # Nothing reaches them any more: gunicorn's quick shutdown (SIGINT), not the
        # graceful one, whose workers notice only at their next 1-second poll.
        stop_all([r.proc for r in surplus], first=signal.SIGINT)
        for replica in surplus:
            if replica.group:
                replica.group.remove()
                self.groups.pop(replica.name, None)

    def replicas(self) -> list[str]:
        return [r.name for r in self.replica_list]

    def upstreams(self) -> dict[str, str]:
        return {f"127.0.0.1:{r.port}": r.name for r in self.replica_list}

    def casualties(self) -> list[str]:
        dead = [f"{r.name} exited" for r in self.replica_list if not r.proc.alive()]
        if self.store.process is not None and not self.store.process.alive():
            dead.append(f"store ({self.s.store}) exited")
        if self.nginx is not None and not self.nginx.alive():
            dead.append("nginx exited")
        return dead

    def inject(self, fault: str, seconds: float) -> dict[str, Any]:
        if fault == "restart-store":
            if self.store.process is None:
                raise UsageError(f"restart-store needs a store server (STORE={self.s.store})")
            t0 = time.monotonic()
            self.store.restart()
            return {"store": self.s.store, "restart_s": round(time.monotonic() - t0, 3)}
        victim = self.replica_list[-1]
        # The whole process group: gunicorn's master and its workers, as a machine loss.
        if fault == "kill-replica":
            os.killpg(victim.proc.pid, signal.SIGKILL)
            return {"replica": victim.name}
        os.killpg(victim.proc.pid, signal.SIGSTOP)
        resume = threading.Timer(seconds, _resume, (victim.proc.pid,))
        resume.daemon = True
        resume.start()
        self._resumers.append(resume)
        return {"replica": victim.name, "paused_s": seconds}

    def heal(self) -> None:
        for t in self._resumers:  # a pause ends now if it has not yet
            t.join()
        self._resumers.clear()
        dead = [i for i, r in enumerate(self.replica_list) if not r.proc.alive()]
        for i in dead:
            old = self.replica_list[i]
            old.proc.stop()
            if old.group:
                old.group.remove()
                self.groups.pop(old.name, None)
        for i, replica in zip(dead, self._start_replicas([i + 1 for i in dead]), strict=True):
            self.replica_list[i] = replica
        if dead:
            self._configure_nginx()

    def components(self) -> list[Component]:
        budget = self.s.replica_cpus if self.mode != "none" else None
        return [
            *(Component(r.name, "replica", budget) for r in self.replica_list),
            Component("nginx", "proxy", None),
            # memory: no store process, so no store component
            *([Component("store", "store", None)] if self.store.process else []),
        ]

    def cpusets(self) -> dict[str, str]:
        procs = {r.name: r.proc for r in self.replica_list} | {
            "nginx": self.nginx,
            "store": self.store.process,
        }
        return {name: cpusplit.tree_cpus(proc.tree()) for name, proc in procs.items() if proc}

    def counters(self) -> dict[str, CpuCounters]:
        out: dict[str, CpuCounters] = {}
        procs = {r.name: r.proc for r in self.replica_list} | {
            "nginx": self.nginx,
            "store": self.store.process,
        }
        for name, proc in procs.items():
            group = self.groups.get(name)
            if group is not None:
                out[name] = group.counters()
            elif proc is not None:
                out[name] = CpuCounters(cpu_s=tree_cpu_seconds(proc))
        return out

    def info(self) -> RuntimeInfo:
        store = self.store.details()
        return RuntimeInfo(
            name=self.name,
            cpu_limits="none" if self.mode == "none" else f"cgroup-{self.mode}",
            cpu_limits_reason=self.reason,
            details={
                "cfs_period_us": self.s.cpu_period_us,
                "runs_as": {
                    "replicas": self.replicas_run_as,
                    "nginx_workers": NGINX_USER.split()[0] if os.geteuid() == 0 else "this user",
                },
                "nginx": self.nginx_bin,
                **({"redis_server": store["binary"]} if self.s.store == "redis" else {}),
                "store": store,
                "init_store": " ".join(["python", *INIT_STORE])
                if self.store_entry.needs_init
                else None,
                "gunicorn": {
                    "workers": self.s.workers,
                    "worker_class": self.s.worker_class,
                    "threads": self.s.threads,
                    "config": str(paths.GUNICORN_CONF.relative_to(paths.ROOT)),
                },
            },
        )

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for t in self._resumers:
            t.cancel()
        replicas = [*self.replica_list, *self._starting]
        for r in replicas:  # a paused replica would not see SIGTERM
            _resume(r.proc.pid)
        # Entry point first, so nothing new arrives while the replicas drain.
        for proc in [self.nginx, *(r.proc for r in reversed(replicas))]:
            if proc is not None:
                proc.stop()
        self.store.stop()
        for group in self.groups.values():
            group.remove()
        self.groups.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- parts ---------------------------------------------------------------------
    def _group(self, name: str, cpus: float | None) -> CpuGroup | None:
        if self.mode == "none":
            return None
        group = CpuGroup(self.mode, f"hscale-{self.run_id}/{name}", cpus, self.s.cpu_period_us)
        self.groups[name] = group
        return group

    def _spawn(
        self,
        name: str,
        argv: list[str],
        cpus: float | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        cpuset: tuple[int, ...] | None = None,
    ) -> ManagedProcess:
        group = self._group(name, cpus)
        argv = cpusplit.taskset(cpuset, argv)
        return ManagedProcess(
            name,
            group.wrap(argv) if group else argv,
            self.workdir / "logs" / f"{name}.log",
            child_env(self.run_id, env),
            cwd=cwd,
        )

    def _start_store(self) -> None:
        self.store.start()
        if self.target.reference and self.store_entry.needs_init:
            self._init("init-store", [sys.executable, *INIT_STORE])
        if self.target.init:  # APP_INIT: your app's one-shot set-up, from its venv
            self._init("app-init", ["sh", "-c", self.target.init])

    def _store_env(self) -> dict[str, str]:
        """The store's variables as a replica gets them (APP_* and the conventional ones)."""
        return stores.with_user_env(self.s.store, self.store.app_env())

    def _init(self, name: str, argv: list[str]) -> None:
        """A one-shot command, once, with a replica's store environment."""
        log = self.workdir / "logs" / f"{name}.log"
        bindir = str(Path(self.python).parent)
        env = {**self._store_env(), "PATH": f"{bindir}:{os.environ.get('PATH', '')}"}
        with open(log, "ab") as out:
            done = subprocess.run(
                argv,
                cwd=self.target.app_dir,
                env=child_env(self.run_id, env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
            )
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
            raise StartupError(f"{name} failed with code {done.returncode}; log {log}:\n{tail}")

    def _start_replicas(self, indices: Sequence[int]) -> list[Replica]:
        """Start replicas side by side, then wait until each answers."""
        self._starting = [self._spawn_replica(i) for i in indices]  # stop() finds them
        for replica in self._starting:
            url = f"http://127.0.0.1:{replica.port}{self.target.health_path}"
            wait_http(url, replica.proc, timeout=self.s.ready_timeout, ok=range(200, 400))
        started, self._starting = self._starting, []
        return started

    def _spawn_replica(self, index: int) -> Replica:
        name, port = f"replica-{index}", self.s.app_port + index - 1
        env = {
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "GUNICORN_WORKERS": str(self.s.workers),
            "GUNICORN_WORKER_CLASS": self.s.worker_class,
            "GUNICORN_THREADS": str(self.s.threads),
            "APP_REPLICA": name,
            "GUNICORN_APP": self.target.wsgi,
            "GUNICORN_CHDIR": str(self.target.app_dir),
            **self._store_env(),
        }
        argv = [self.python, "-m", "gunicorn", "-c", str(paths.GUNICORN_CONF)]
        # Not root where nobody can read the interpreter, its venv, the code and the config.
        venv = Path(self.python).parent.parent
        needs: list[str | Path] = [self.python, venv, self.target.app_dir, paths.GUNICORN_CONF]
        argv, self.replicas_run_as = as_unprivileged(argv, needs)
        proc = self._spawn(
            name, argv, self.s.replica_cpus, env, cwd=self.target.app_dir,
            cpuset=self.replica_cpuset,
        )  # fmt: skip
        return Replica(name, port, proc, self.groups.get(name))

    def _configure_nginx(self) -> None:
        conf = self.workdir / "nginx.conf"
        logdir = self.workdir / "logs"
        conf.write_text(
            paths.render_nginx(
                {
                    "DAEMON": "off",
                    "TMP": str(self.tmp),
                    "ERROR_LOG": str(logdir / "nginx-error.log"),
                    "ACCESS_LOG": f"{logdir / 'nginx-access.log'} upstream buffer=256k flush=2s",
                    # As root, the workers that face clients run as nobody; the master
                    # (root) opens the logs and the listening socket before they start.
                    "USER_DIRECTIVE": f"user {NGINX_USER};" if os.geteuid() == 0 else "",
                    "LISTEN": f"{self.s.publish_address}:{self.s.port}",
                    "UPSTREAM_SERVERS": "\n".join(
                        f"        server 127.0.0.1:{r.port} max_fails=3 fail_timeout=5s;"
                        f"  # {r.name}"
                        for r in self.replica_list
                    ),
                }
            )
        )
        if self.nginx is None:
            self.nginx = self._spawn(
                "nginx", [self.nginx_bin, "-c", str(conf), "-p", str(self.tmp)]
            )
            wait_http(f"{self.endpoint}/nginx-health", self.nginx)
            return
        # Reload: new workers take the new upstream list; old ones finish their requests.
        check = ManagedProcess(
            "nginx-check",
            [self.nginx_bin, "-t", "-c", str(conf), "-p", str(self.tmp)],
            self.workdir / "logs" / "nginx-check.log",
            child_env(self.run_id),
        )
        if check.popen.wait(timeout=10) != 0:
            raise StartupError(f"nginx rejected its new configuration; see {check.log}")
        check.stop()
        old_workers = self.nginx.tree()[1:]
        os.kill(self.nginx.pid, signal.SIGHUP)
        # Until the old workers exit they still accept connections with the old upstream
        # list: a replica about to stop would then answer 502 (nginx tries two at most).
        psutil.wait_procs(old_workers, timeout=NGINX_RELOAD_S)
