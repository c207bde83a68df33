"""The docker runtime: docker-compose.yml's stack (N app containers, each with its own
CPU and memory limit, behind an nginx container, sharing the store container that STORE
selects: redis, memcached, postgres, or none for memory and STORE=none), CPU counters
from the Docker Engine API. The app containers run the target: the reference app, your
project built as an image (APP=path), or your prebuilt image (IMAGE=name:tag)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import psutil
import requests
from docker.errors import DockerException

from hscale import __version__, cgroups, cpusplit, loadgen, stores
from hscale.cgroups import CpuCounters
from hscale.cleanup import project_of
from hscale.errors import UsageError
from hscale.procs import StartupError, cpu_seconds, port_in_use
from hscale.runtimes import images
from hscale.runtimes.base import UPSTREAM_HEADER, Component, Runtime, RuntimeInfo, served_by
from hscale.runtimes.compose import (
    COMPOSE_FILE,
    Compose,
    command,
    compose_services,
    write_for_your_app,
    write_override,
)
from hscale.runtimes.local_stores import max_connections
from hscale.settings import Settings

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
SAMPLE_S = 0.5
# The app's command that creates the store's schema (idempotent), run once before replicas
# of a store whose entry (hscale/stores.py) needs it; --wait covers a store that passed
# its healthcheck a moment before it accepts the role.
INIT_STORE = ("python", "-m", "refapp.init_store", "--wait", "30")
REFERENCE_READY_S = 90  # the reference app's replicas: healthy and routed within this
# Where a containerised Locust finds your Locust file's directory (read-only).
OWN_LOCUST_DIR = images.OWN_LOCUST_DIR
LOG_TAIL = 3  # lines of a failing container's log in a one-line error
GUNICORN_PREFIX = re.compile(r"^\[[^\]]+\] \[\d+\] \[[A-Z]+\] ")


def engine() -> docker.DockerClient:
    """A client of a Docker engine that answers, or a UsageError naming the alternative."""
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except (DockerException, requests.RequestException) as exc:
        raise UsageError(
            f"no Docker engine answers ({type(exc).__name__}); start it, or use RUNTIME=local"
        ) from None


def engine_answers() -> bool:
    try:
        engine()
        return True
    except UsageError:
        return False


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(self, settings: Settings, run_id: str, workdir: Path) -> None:
        self.s, self.run_id, self.workdir = settings, run_id, Path(workdir)
        # Letters and digits only: compose v1 strips anything else from project names.
        self.project = project_of(run_id)
        self.password = secrets.token_hex(16)  # per run; never written to disk
        self.postgres_password = secrets.token_hex(16)  # likewise
        self.store_entry = stores.STORES[settings.store]
        self.store_service = self.store_entry.service  # None: memory, no server
        self.extra_env: dict[str, str] = {}
        self.app_image: str | None = None  # known once built (APP) or checked (IMAGE)
        self._app_file: Path | None = None  # your app: compose.for_your_app's file
        self._locust_override: Path | None = None  # your Locust file in containers
        self._staged: Path | None = None  # a copy of your Locust file's directory
        self.client: docker.DockerClient | None = None
        self._started = False
        self._stopped = False
        self._n = 0  # replicas asked for
        self._resumers: list[threading.Timer] = []  # pause-replica's unpause timers
        self._killed: set[str] = set()  # containers kill-replica killed (not app failures)
        self._endpoint: str | None = None
        self._locust_cpu: dict[str, float] = {}
        self._stop_sampler = threading.Event()

    # -- interface -----------------------------------------------------------------
    def preflight(self) -> None:
        self.client = engine()
        self.compose_cmd = " ".join(command())
        if port_in_use(self.s.port, self.s.publish_address):
            raise UsageError(
                f"port {self.s.port} (PORT, nginx) is already in use on {self.s.publish_address}"
            )
        if self.target.image:  # IMAGE: there, or pullable, before anything starts
            images.ensure_image(self.target.image)
            self.app_image = self.target.image

    @property
    def endpoint(self) -> str:
        """nginx's address on the project's own bridge network. Load goes there directly:
        through the published 127.0.0.1 port it would also pass docker-proxy, a userland
        copy loop that cost 0.2 CPU at 2,400 req/s here, which the stack would not pay
        behind a real load balancer."""
        if self._endpoint is None:
            nginx = self._containers("nginx")[0]
            nets = nginx.attrs["NetworkSettings"]["Networks"]
            ip = next(v["IPAddress"] for k, v in nets.items() if k.endswith("_frontend"))
            self._endpoint = f"http://{ip}:8080"
        return self._endpoint

    @property
    def published(self) -> str:
        return f"http://{self.s.entry_address}:{self.s.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            # Until your project's image is built, the reference tag fills the variable.
            "APP_IMAGE": self.app_image or f"hscale-app:{__version__}",
            "UPSTREAM_PORT": str(self.target.port),
            "PUBLISH_ADDRESS": self.s.publish_address,
            "NGINX_PROXY_IMAGE": f"hscale-nginx:{__version__}",
            "STORE": self.s.store,
            "REDIS_PASSWORD": self.password,
            "POSTGRES_PASSWORD": self.postgres_password,
            "POSTGRES_MAX_CONNECTIONS": str(max_connections(self.s)),
            "POSTGRES_STORE_IMAGE": f"hscale-postgres:{__version__}",
            "WORKERS": str(self.s.workers),
            "WORKER_CLASS": self.s.worker_class,
            "THREADS": str(self.s.threads),
            "REPLICA_CPUS": f"{self.s.replica_cpus:g}",
            "REPLICA_MEMORY": self.s.replica_memory,
            "PORT": str(self.s.port),
            "LOADGEN_IMAGE": f"hscale-loadgen:{__version__}",
            "SCENARIO": self.s.scenario,
            **self.extra_env,
        }

    def compose(self) -> Compose:
        # The loadgen profile only when asked for: its image takes a while to build.
        profiles: tuple[str, ...] = ("loadgen",) if self._containerised_load() else ()
        if self.store_entry.profile:  # redis has none: it is the default
            profiles += (self.store_entry.profile,)
        if not self.target.reference and self._app_file is None:
            self._app_file = write_for_your_app(self.workdir / "compose.yml", self.s.store)
        overrides = tuple(
            f for f in (self._locust_override, self._split_override()) if f is not None
        )
        return Compose(
            self.project, self.env(), profiles, overrides, self._app_file or COMPOSE_FILE
        )

    def _split_override(self) -> Path | None:
        """CPU_SPLIT: every app container on the replicas' CPUs, every other service
        (nginx, the store, Locust's containers) on the rest."""
        if not self.replica_cpuset:
            return None
        mine, rest = self.replica_cpuset, cpusplit.rest_of(self.replica_cpuset)
        return write_override(
            self.workdir / "compose.cpuset.yml",
            {
                name: {"cpuset": cpusplit.cpu_list(mine if name == "app" else rest)}
                for name in compose_services()
            },
        )

    def loadgen_launcher(self):
        return self._launch_locust if self.s.loadgen_workers else None

    def _containerised_load(self) -> bool:
        """Whether Locust runs in containers (its image is built)."""
        return bool(self.s.loadgen_workers)

    def _launch_locust(self, plan, out: Path, hscale_env: dict[str, str]):
        """Workers as containers (started afresh: they quit with each point's master),
        and the command that runs this point's master beside them."""
        workers = plan.workers
        own_file = self._stage_locustfile(plan.own_file) if plan.own_file else None
        self.compose().run(
            "up", "-d", "--no-deps", "--scale", f"locust-worker={workers}", "locust-worker"
        )
        self._stop_sampler.set()
        self._locust_cpu = {"started": 0.0}  # workers restarted: their counters start at 0
        self._stop_sampler = threading.Event()
        threading.Thread(target=self._sampler, args=(self._stop_sampler,), daemon=True).start()
        _give_to_locust(out)  # the master runs as the image's user and writes here
        inside = {k: v.replace(str(out), "/out") for k, v in hscale_env.items()}
        contained = dataclasses.replace(plan, host="http://nginx:8080")
        files = loadgen.locustfiles(plan, "/loadtests", own_file=own_file)
        options = loadgen.locust_options(contained, files, "/out")
        env_flags = [arg for k, v in inside.items() for arg in ("-e", f"{k}={v}")]
        argv = self.compose().argv(
            "run",
            "--rm",
            "--use-aliases",
            "-v",
            f"{out}:/out",
            *env_flags,
            "locust-master",
            *options,
            "--master",
            "--expect-workers",
            str(workers),
        )
        return argv, self.env()

    def _stage_locustfile(self, own_file: str) -> str:
        """Your Locust file's directory, copied once (readable by the Locust containers'
        non-root user whatever its modes here) and mounted read-only into the master and
        the workers; the workers run it beside hscale's hooks. Returns the file's path
        inside the containers."""
        path = Path(own_file).resolve()
        if self._staged is None:
            self._staged = Path(tempfile.mkdtemp(prefix="hscale-locust-"))
            images.readable_copy(path.parent, self._staged)
            mount = {"type": "bind", "source": str(self._staged), "target": OWN_LOCUST_DIR,
                     "read_only": True}  # fmt: skip
            inside = f"{OWN_LOCUST_DIR}/{path.name}"
            worker = ["-f", f"{inside},/loadtests/{loadgen.LISTENER}", "--worker",
                      "--master-host", "locust-master"]  # fmt: skip
            self._locust_override = write_override(
                self.workdir / "compose.locust.yml",
                {
                    "locust-worker": {
                        "command": worker,
                        "environment": {loadgen.OWN_FILE_ENV: "1"},
                        "volumes": [mount],
                    },
                    "locust-master": {"volumes": [mount]},
                },
            )
        return f"{OWN_LOCUST_DIR}/{path.name}"

    def start(self, n: int) -> None:
        self._started = True
        skip = () if self.target.reference else ("app",)  # your app's image is not ./app
        self.extra_env = images.build(
            self.compose(), self.s.offline, self.log, self.s.store, skip=skip
        )
        self.app_image = self._app_image()
        self._start_store()
        self._app_init()
        self.resize(n)

    def _app_image(self) -> str:
        """The replicas' image: the reference app's, yours as given, or built from APP."""
        if self.target.image:
            return self.target.image
        if self.target.project is None:
            return f"hscale-app:{__version__}"
        return images.build_project(
            self.target,
            {**images.registry_env(), **self.extra_env},
            self.log,
            self.workdir / "logs" / "app-image-build.log",
        )

    def _app_init(self) -> None:
        """APP_INIT, once, in a one-off container of the app image with the replicas'
        environment (the store's variables), before any replica starts."""
        if not self.target.init:
            return
        self.log(f"app: APP_INIT {self.target.init}")
        done = self.compose().run(
            "run", "--rm", "--no-deps", "-T", "--entrypoint", "sh", "app", "-c",
            self.target.init, check=False, timeout=max(120.0, self.s.ready_timeout),
        )  # fmt: skip
        log = self.workdir / "logs" / "app-init.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(done.stdout)
        if done.returncode != 0:
            raise StartupError(
                f"APP_INIT failed with code {done.returncode} (log {log}): {_tail(done.stdout)}"
            )

    def _start_store(self) -> None:
        """The store alone, healthy, then the app's init-store command once: all before
        any replica starts."""
        if self.store_service is None:
            return
        self.log(f"store: starting {self.store_service}")
        self.compose().run("up", "-d", self.store_service)
        self._wait_healthy(self.store_service)
        if self.store_entry.needs_init and self.target.reference:  # your app: APP_INIT
            self.log(f"store: {' '.join(INIT_STORE)}")
            self.compose().run("run", "--rm", "--no-deps", "-T", "app", *INIT_STORE)

    def _wait_healthy(self, service: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            found = self._containers(service)
            if found and _health(found[0]) == "healthy":
                return
            if time.monotonic() > deadline:
                state = _health(found[0]) if found else "not running"
                raise StartupError(
                    f"the {service} container is not healthy after {timeout:g} s: {state}"
                )
            time.sleep(0.5)

    def resize(self, n: int) -> None:
        self._n = n
        # Named services: a bare `up` would also start redis (it has no profile) whatever
        # STORE is. Once nginx runs, only the app: nginx's depends_on would make compose
        # wait for Docker's healthcheck (2 s apart), where readiness through nginx below
        # (HEALTH_PATH, the reference app's /readyz too) answers as soon as it is true.
        services = ("--no-deps", "app") if self._containers("nginx") else ("app", "nginx")
        self._remove_surplus(n)
        self.compose().run("up", "-d", "--no-recreate", "--scale", f"app={n}", *services)
        reference = self.target.reference
        timeout = REFERENCE_READY_S if reference else self.s.ready_timeout
        deadline = time.monotonic() + timeout
        problem = "not started"
        while True:
            self._fail_if_exited()
            apps = self._containers("app")
            if len(apps) == n:
                names = {_hostname(c) for c in apps}
                problem = self._deaf(apps) or self._routing_problem(names) or ""
                if not problem:
                    self._set_cpu_period(apps)
                    self._pin_proxy()
                    return
            else:
                problem = f"{len(apps)} of {n} replicas running"
            if time.monotonic() > deadline:
                raise StartupError(self._not_ready(n, timeout, problem))
            time.sleep(0.5)

    def _deaf(self, apps: list) -> str:
        """Replicas on this host not yet listening on their port: not through nginx yet,
        since 3 refused connections make nginx skip a replica for fail_timeout (5 s),
        which held a resize for that long. Empty when all listen (or cannot be read)."""
        deaf = [c for c in apps if _listening(c, self.target.port) is False]
        if not deaf:
            return ""
        return f"{len(apps) - len(deaf)} of {len(apps)} replicas listening on {self.target.port}"

    def _remove_surplus(self, n: int) -> None:
        """A shrink: the replicas compose would stop (the highest numbers) go at once. No
        request is in flight between trials, and compose's way, gunicorn's graceful stop
        and then removal one container at a time, took 2.8 s here."""
        apps = sorted(self._containers("app"), key=_number)
        for c in apps[n:]:
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)

    def _pin_proxy(self) -> None:
        """CPU_SPLIT: the engine's userland proxy of nginx's published port carries every
        request from a load generator on this host; it goes with the rest."""
        if not self.replica_cpuset:
            return
        rest = cpusplit.rest_of(self.replica_cpuset)
        for proc in psutil.process_iter(["name", "cmdline"]):
            argv = " ".join(proc.info["cmdline"] or []) + " "
            if proc.info["name"] == "docker-proxy" and f"-host-port {self.s.port} " in argv:
                with contextlib.suppress(psutil.Error):
                    proc.cpu_affinity(list(rest))

    def _not_ready(self, n: int, timeout: float, problem: str) -> str:
        """One line: what was wrong at the deadline, and the last lines of a replica's log."""
        apps = self._containers("app")
        states = {_hostname(c): _health(c) for c in apps} if self.target.reference else {}
        tail = _tail(_logs(apps[0])) if apps else ""
        return (
            f"{n} app replica(s) not answering {self.target.health_path} through nginx "
            f"after {timeout:g} s ({problem}{f'; {states}' if states else ''})"
            + (f"; last log lines of {_hostname(apps[0])}: {tail}" if tail else "")
        )

    def _fail_if_exited(self) -> None:
        """A replica that exited (your app failed to import, a bad command) fails the start
        at once, naming its error, instead of at the deadline."""
        assert self.client is not None
        labels = [f"{self.project_label}={self.project}", self._service_label("app")]
        dead = self.client.containers.list(all=True, filters={"label": labels, "status": "exited"})
        if dead:
            c = dead[0]
            code = c.attrs.get("State", {}).get("ExitCode")
            log = self.workdir / "logs" / f"{_hostname(c)}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            text = _logs(c)
            log.write_text(text)
            raise StartupError(
                f"app replica {_hostname(c)} ({self.app_image}) exited with code {code} "
                f"before answering {self.target.health_path}: {_tail(text)} (log {log})"
            )

    def _set_cpu_period(self, apps: list) -> None:
        """CPU_PERIOD_US on every replica (see cgroups.set_container_period)."""
        if self.s.cpu_period_us == cgroups.PERIOD_US:
            return
        for c in apps:
            if not cgroups.set_container_period(c.id, self.s.replica_cpus, self.s.cpu_period_us):
                raise StartupError(
                    f"CPU_PERIOD_US={self.s.cpu_period_us}: the cgroup of {c.name} is not on "
                    "this host; only the default period (100000) works here"
                )

    # -- faults ----------------------------------------------------------------------
    def casualties(self) -> list[str]:
        assert self.client is not None
        labels = [f"{self.project_label}={self.project}"]
        gone = self.client.containers.list(all=True, filters={"label": labels, "status": "exited"})
        # Locust's containers quit with each point by design; the stack's must not.
        stack = {"app", "nginx", *([self.store_service] if self.store_service else [])}
        return [
            f"{_service(c)} container {_hostname(c)} exited" for c in gone if _service(c) in stack
        ]

    def inject(self, fault: str, seconds: float) -> dict[str, Any]:
        if fault == "restart-store":
            if self.store_service is None:
                raise UsageError(f"restart-store needs a store server (STORE={self.s.store})")
            (store,) = self._containers(self.store_service)
            t0 = time.monotonic()
            store.restart(timeout=10)  # the same container: no persistence, no data
            self._wait_healthy(self.store_service)
            return {"store": self.s.store, "restart_s": round(time.monotonic() - t0, 3)}
        victim = max(self._containers("app"), key=_hostname)
        if fault == "kill-replica":
            self._killed.add(victim.id)
            victim.kill(signal="SIGKILL")
            return {"replica": _hostname(victim)}
        victim.pause()  # the freezer cgroup: SIGSTOP for every process in the container
        resume = threading.Timer(seconds, lambda: _unpause(victim))
        resume.daemon = True
        resume.start()
        self._resumers.append(resume)
        return {"replica": _hostname(victim), "paused_s": seconds}

    def heal(self) -> None:
        for t in self._resumers:
            t.join()
        self._resumers.clear()
        assert self.client is not None
        labels = [f"{self.project_label}={self.project}", self._service_label("app")]
        for c in self.client.containers.list(all=True, filters={"label": labels}):
            if c.status == "exited":  # a killed replica: a new one takes its place
                c.remove(force=True)
        self.resize(self._n)

    def replicas(self) -> list[str]:
        return sorted(_hostname(c) for c in self._containers("app"))

    def upstreams(self) -> dict[str, str]:
        """Each app container's address on the backend network, where nginx reaches it."""
        network = f"{self.project}_backend"
        out = {}
        for c in self._containers("app"):
            ip = c.attrs["NetworkSettings"]["Networks"].get(network, {}).get("IPAddress")
            if ip:
                out[f"{ip}:{self.target.port}"] = _hostname(c)
        return out

    def components(self) -> list[Component]:
        return [
            *(
                Component(_hostname(c), "replica", self.s.replica_cpus)
                for c in self._containers("app")
            ),
            Component("nginx", "proxy", None),
            # memory: no store container, so no store component
            *([Component("store", "store", None)] if self.store_service else []),
            Component("engine", "overhead", None),
        ]

    def cpusets(self) -> dict[str, str]:
        services = {"nginx": "nginx", "store": self.store_service}
        named = {_hostname(c): c for c in self._containers("app")} | {
            name: found[0]
            for name, svc in services.items()
            if svc and (found := self._containers(svc))
        }
        # "" is the engine's "any CPU"
        return {name: c.attrs["HostConfig"].get("CpusetCpus") or "" for name, c in named.items()}

    def counters(self) -> dict[str, CpuCounters]:
        named = {_hostname(c): c for c in self._containers("app")}
        services = [("nginx", "nginx")]
        if self.store_service:
            services.append(("store", self.store_service))
        for name, service in services:
            found = self._containers(service)
            if not found:
                raise StartupError(f"the {service} container is not running")
            named[name] = found[0]
        with ThreadPoolExecutor(max_workers=max(1, len(named))) as pool:
            out = dict(zip(named, pool.map(_cpu_counters, named.values()), strict=True))
        if self._locust_cpu:  # the load generator: master and workers together
            self._sample_locust()
            out["loadgen"] = CpuCounters(cpu_s=sum(self._locust_cpu.values()))
        return out | {"engine": CpuCounters(cpu_s=_engine_cpu_seconds())}

    def _sample_locust(self) -> None:
        """Latest cumulative CPU of each Locust container of this point. Workers quit the
        moment the master stops, before the window's last reading, so a sampler keeps
        their final values (at most SAMPLE_S old)."""
        for c in self._containers("locust-worker") + self._containers("locust-master"):
            try:  # never backwards: an exiting container reads as zero
                cpu = _cpu_counters(c).cpu_s
                self._locust_cpu[c.id] = max(cpu, self._locust_cpu.get(c.id, 0.0))
            except (DockerException, KeyError, ValueError, requests.RequestException):
                continue  # exited between listing and reading

    def _sampler(self, stop: threading.Event) -> None:
        while not stop.wait(SAMPLE_S):
            self._sample_locust()

    def info(self) -> RuntimeInfo:
        version = self.client.version() if self.client else {}
        offline = self.extra_env.get("PIP_INSTALL_ARGS", "") != ""
        return RuntimeInfo(
            name=self.name,
            cpu_limits="docker-cpus",
            details={
                "engine": version.get("Version"),
                "api": version.get("ApiVersion"),
                "compose": getattr(self, "compose_cmd", None),
                "project": self.project,
                "images_path": "registry-less (Debian base)" if offline else "registry",
                "base_image": images.base_tag() if offline else None,
                "store": self._store_details(),
                "init_store": " ".join(INIT_STORE)
                if self.store_entry.needs_init and self.target.reference
                else None,
                "target": self.target.as_dict(),
                "app_image": self.app_image,
                "app_image_id": images.image_id(self.app_image) if self.app_image else None,
                "replica_memory": self.s.replica_memory,
                "cfs_period_us": self.s.cpu_period_us,
                "gunicorn": {
                    "workers": self.s.workers,
                    "worker_class": self.s.worker_class,
                    "threads": self.s.threads,
                    # IMAGE runs its own command: these settings reach it as GUNICORN_*
                    # variables only.
                    "config": "app/gunicorn.conf.py" if not self.target.image else None,
                },
            },
        )

    def stop(self) -> None:
        if self._stopped or not self._started:
            return
        self._stopped = True
        self._stop_sampler.set()
        for t in self._resumers:  # a paused replica must not outlive its pause
            t.cancel()
        with contextlib.suppress(DockerException, requests.RequestException):
            for c in self._containers("app") if self.client else []:
                if c.status == "paused":
                    _unpause(c)
        self.compose().run("down", "--volumes", "--remove-orphans", "--timeout", "15", check=False)
        self.leftovers(remove=True)
        if self._staged is not None:
            shutil.rmtree(self._staged, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------
    def _store_details(self) -> dict:
        if self.store_service is None:
            return {
                "name": "memory",
                "service": None,
                "shared": False,
                "note": "in-process, not shared: each app process has its own dict, so a "
                "read that lands on another replica or worker misses",
            }
        # postgres: an image built FROM a base; redis and memcached: the base itself.
        base_var = images.STORE_IMAGE_VARS.get(self.s.store, "REDIS_IMAGE")
        base = self.extra_env.get(base_var) or images.compose_default(base_var)
        built = self.env()["POSTGRES_STORE_IMAGE"] if self.s.store == "postgres" else None
        return {
            "name": self.s.store,
            "service": self.store_service,
            "image": built or base,
            "base_image": base,
            "version": self._store_version(),
            "auth": {
                "redis": "password generated per run",
                "postgres": "scram-sha-256, role hscale, password generated per run",
                "memcached": "none (ASCII protocol has none): internal network only",
            }[self.s.store],
        }

    def _store_version(self) -> str | None:
        """Asked of the running store container (None before it starts)."""
        if self.client is None or not self._started or self.store_service is None:
            return None
        found = self._containers(self.store_service)
        if not found:
            return None
        try:
            code, out = found[0].exec_run(list(self.store_entry.version_cmd))
        except (DockerException, requests.RequestException):
            return None
        lines = out.decode(errors="replace").strip().splitlines()
        return lines[0] if code == 0 and lines else None

    def log(self, message: str) -> None:
        from hscale.console import err_console

        err_console.print(message, highlight=False, markup=False)

    project_label = PROJECT_LABEL

    def _service_label(self, service: str) -> str:
        return f"{SERVICE_LABEL}={service}"

    def _containers(self, service: str) -> list:
        """Running containers of a service (on this node)."""
        labels = [f"{self.project_label}={self.project}", self._service_label(service)]
        return [c for e in self._engines() for c in self._listed(e, {"label": labels})]

    def _listed(self, engine_: docker.DockerClient, filters: dict) -> list:
        """An engine's running containers that match; on several engines (swarm), one
        that does not answer (a node lost) has none, and the others still count."""
        if len(self._engines()) == 1:
            return engine_.containers.list(filters=filters, ignore_removed=True)
        try:
            return engine_.containers.list(filters=filters, ignore_removed=True)
        except (DockerException, requests.RequestException):
            return []

    def _engines(self) -> list[docker.DockerClient]:
        """The engines that run this stack's containers: this one (swarm: every node's)."""
        assert self.client is not None
        return [self.client]

    def _routing_problem(self, names: set[str]) -> str | None:
        """None once nginx's upstream has caught up with a resize: a fresh connection's
        /nginx-upstreams lists exactly the running replicas' addresses (so no worker that
        accepts connections still sends to a stopped one), then requests through it for
        HEALTH_PATH answer 2xx/3xx, each from a replica now running (nginx's X-Upstream,
        mapped by upstreams()), and every one of them answers. nginx re-resolves DNS every
        second; until then, after a scale-down, requests to removed replicas time out, and
        a shrink by two could fail both of a request's tries (a 504)."""
        upstreams, seen = self.upstreams(), set()
        url = f"{self.published}{self.target.health_path}"
        try:
            listed = requests.get(f"{self.published}/nginx-upstreams", timeout=3).text.split()
            if set(listed) != set(upstreams):
                return f"nginx sends to {len(listed)} address(es), not yet the {len(names)} running"
            old = self._nginx_old_workers()
            if old:
                return f"nginx's {old} worker(s) of an earlier configuration still running"
            with requests.Session() as session:
                for _ in range(4 * len(names)):
                    r = session.get(url, timeout=3, allow_redirects=False)
                    addr = served_by(r.headers.get(UPSTREAM_HEADER)) or "no upstream"
                    name = upstreams.get(addr)
                    if not 200 <= r.status_code < 400:
                        return f"HTTP {r.status_code} from {name or addr}"
                    if name not in names:
                        return f"answered by {addr}, not a running replica"
                    seen.add(name)
                    if seen == names:
                        return None
        except requests.RequestException as exc:
            return type(exc).__name__
        return f"{len(seen)} of {len(names)} replicas answered"

    def _nginx_old_workers(self) -> int:
        """nginx's workers beyond its one (worker_processes 1) or shutting down: after a
        reload the old worker may still accept a connection and send it to a stopped
        replica's address (two such tries: a 504), until it has taken the signal."""
        titles = [p[-1] for c in self._containers("nginx") for p in c.top().get("Processes") or []]
        workers = [t for t in titles if t.startswith("nginx: worker process")]
        leaving = sum("shutting down" in t for t in workers)
        return leaving + max(0, len(workers) - leaving - 1)

    def leftovers(self, remove: bool = False) -> list[str]:
        """Containers, networks and volumes of this run still present (removed if asked)."""
        label = {"label": f"{self.project_label}={self.project}"}
        found = []
        for kind in ("container", "network", "volume"):
            # ignore_removed: `stack rm` and compose remove containers while this lists them
            extra = {"all": True, "ignore_removed": True} if kind == "container" else {}
            items = [
                i
                for e in self._engines()
                for i in getattr(e, f"{kind}s").list(filters=label, **extra)
            ]
            for item in items:
                found.append(f"{kind} {item.name}")
                if remove:
                    item.remove(**({"force": True} if kind == "container" else {}))
        return found


LOCUST_UID = 10004  # loadtests/Dockerfile's USER


def _give_to_locust(out: Path) -> None:
    """The point's directory, writable by the Locust container's user and nobody else:
    owned by it when hscale can chown (root), else group-writable, never world-writable."""
    try:
        os.chown(out, LOCUST_UID, LOCUST_UID)
        out.chmod(0o755)
    except PermissionError:
        out.chmod(0o775)


def _unpause(container) -> None:
    with contextlib.suppress(DockerException):
        container.unpause()


def _service(container) -> str:
    return container.labels.get(SERVICE_LABEL, "")


def _health(container) -> str:
    container.reload()
    return container.attrs.get("State", {}).get("Health", {}).get("Status", "none")


def _number(container) -> int:
    return int(container.labels.get("com.docker.compose.container-number", 0))


def _hostname(container) -> str:
    return container.attrs["Config"]["Hostname"]


def _logs(container) -> str:
    try:
        return container.logs(tail=200).decode(errors="replace")
    except (DockerException, requests.RequestException):
        return ""


def _tail(text: str, lines: int = LOG_TAIL) -> str:
    """The last lines of a log on one line; a Python exception's own line first when
    there is one (gunicorn's shutdown lines come after it)."""
    # Without gunicorn's "[time] [pid] [LEVEL] " prefix: the message is what matters.
    kept = [GUNICORN_PREFIX.sub("", x).strip() for x in text.splitlines() if x.strip()]
    errors = [x for x in kept if re.match(r"^[\w.]+(Error|Exception)\b", x)]
    last = kept[-lines:]
    picked = [errors[-1], *(x for x in last if x != errors[-1])] if errors else last
    return " | ".join(picked)


def _listening(container, port: int) -> bool | None:
    """Whether the container's server listens on `port`, read from its network namespace
    on this host (None: not on this host, or not readable)."""
    pids = cgroups.container_pids(container.id)
    return cgroups.listening(pids[0], port) if pids else None


def _cpu_counters(container) -> CpuCounters:
    """Cumulative CPU time and CFS throttling of one container.

    Read from the container's cgroup when it is on this host (instant and exact), else
    from the Engine API's stats, which took 0.56 s a call on this project's machine: too
    slow to mark the edges of a measurement window.
    """
    local = cgroups.container_counters(container.id)
    if local is not None:
        return local
    cpu = container.stats(stream=False, one_shot=True)["cpu_stats"]
    throttling = cpu.get("throttling_data", {})
    return CpuCounters(
        cpu_s=cpu["cpu_usage"]["total_usage"] / 1e9,
        nr_periods=throttling.get("periods", 0),
        nr_throttled=throttling.get("throttled_periods", 0),
        throttled_s=throttling.get("throttled_time", 0) / 1e9,
    )


ENGINE_PROCESSES = (
    "dockerd",
    "containerd",
    "docker-proxy",
    "containerd-shim",
    "containerd-shim-runc-v2",
)


def _engine_cpu_seconds() -> float:
    """CPU of the engine's own processes (port proxy, log and stats plumbing): real cost of
    the containerised shape that no container's counters show."""
    engine = (p for p in psutil.process_iter(["name"]) if p.info["name"] in ENGINE_PROCESSES)
    return cpu_seconds(engine)
