"""The docker runtime: docker-compose.yml's stack (N app containers, each with its own
CPU and memory limit, behind an nginx container, sharing a Redis container), CPU counters
from the Docker Engine API."""

from __future__ import annotations

import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import psutil
import requests
from docker.errors import DockerException

from hscale import __version__, images
from hscale.cgroups import CpuCounters
from hscale.compose import Compose, command
from hscale.procs import StartupError, port_in_use
from hscale.runtimes.base import Component, Runtime, RuntimeInfo
from hscale.settings import Settings, UsageError

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


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
        self.project = "hscale" + "".join(c for c in run_id if c.isalnum()).lower()
        self.password = secrets.token_hex(16)  # per run; never written to disk
        self.extra_env: dict[str, str] = {}
        self.client: docker.DockerClient | None = None
        self._started = False
        self._stopped = False
        self._endpoint: str | None = None

    # -- interface -----------------------------------------------------------------
    def preflight(self) -> None:
        self.client = engine()
        self.compose_cmd = " ".join(command())
        if port_in_use(self.s.port):
            raise UsageError(f"port {self.s.port} (PORT, nginx) is already in use on 127.0.0.1")

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
        return f"http://127.0.0.1:{self.s.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "APP_IMAGE": f"hscale-app:{__version__}",
            "NGINX_PROXY_IMAGE": f"hscale-nginx:{__version__}",
            "REDIS_PASSWORD": self.password,
            "WORKERS": str(self.s.workers),
            "WORKER_CLASS": self.s.worker_class,
            "THREADS": str(self.s.threads),
            "REPLICA_CPUS": f"{self.s.replica_cpus:g}",
            "REPLICA_MEMORY": self.s.replica_memory,
            "PORT": str(self.s.port),
            **self.extra_env,
        }

    def compose(self) -> Compose:
        return Compose(self.project, self.env())

    def start(self, n: int) -> None:
        self._started = True
        self.extra_env = images.build(self.compose(), self.s.offline, self.log)
        self.resize(n)

    def resize(self, n: int) -> None:
        self.compose().run("up", "-d", "--no-recreate", "--scale", f"app={n}")
        deadline = time.monotonic() + 90
        while True:
            apps = self._containers("app")
            healthy = [c for c in apps if _health(c) == "healthy"]
            if len(apps) == n and len(healthy) == n and self._nginx_ready():
                return
            if time.monotonic() > deadline:
                states = {c.name: _health(c) for c in apps}
                raise StartupError(f"app replicas not healthy after 90 s: {states}")
            time.sleep(0.5)

    def replicas(self) -> list[str]:
        return sorted(_hostname(c) for c in self._containers("app"))

    def components(self) -> list[Component]:
        return [
            *(
                Component(_hostname(c), "replica", self.s.replica_cpus)
                for c in self._containers("app")
            ),
            Component("nginx", "proxy", None),
            Component("store", "store", None),
            Component("engine", "overhead", None),
        ]

    def counters(self) -> dict[str, CpuCounters]:
        named = {_hostname(c): c for c in self._containers("app")}
        for name, service in (("nginx", "nginx"), ("store", "redis")):
            named |= dict.fromkeys([name], *self._containers(service)[:1])
        with ThreadPoolExecutor(max_workers=max(1, len(named))) as pool:
            stats = dict(zip(named, pool.map(_cpu_counters, named.values()), strict=True))
        return stats | {"engine": CpuCounters(cpu_s=_engine_cpu_seconds())}

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
                "replica_memory": self.s.replica_memory,
                "gunicorn": {
                    "workers": self.s.workers,
                    "worker_class": self.s.worker_class,
                    "threads": self.s.threads,
                    "config": "app/gunicorn.conf.py",
                },
            },
        )

    def stop(self) -> None:
        if self._stopped or not self._started:
            return
        self._stopped = True
        self.compose().run("down", "--volumes", "--remove-orphans", "--timeout", "15", check=False)
        self.leftovers(remove=True)

    # -- helpers -------------------------------------------------------------------
    def log(self, message: str) -> None:
        from hscale.console import err_console

        err_console.print(message, highlight=False, markup=False)

    project_label = PROJECT_LABEL

    def _service_label(self, service: str) -> str:
        return f"{SERVICE_LABEL}={service}"

    def _containers(self, service: str) -> list:
        """Running containers of a service (on this node)."""
        assert self.client is not None
        labels = [f"{self.project_label}={self.project}", self._service_label(service)]
        return self.client.containers.list(filters={"label": labels})

    def _nginx_ready(self) -> bool:
        try:
            return requests.get(f"{self.published}/nginx-health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def leftovers(self, remove: bool = False) -> list[str]:
        """Containers, networks and volumes of this run still present (removed if asked)."""
        assert self.client is not None
        label = {"label": f"{self.project_label}={self.project}"}
        found = []
        for kind, items in (
            ("container", self.client.containers.list(all=True, filters=label)),
            ("network", self.client.networks.list(filters=label)),
            ("volume", self.client.volumes.list(filters=label)),
        ):
            for item in items:
                found.append(f"{kind} {item.name}")
                if remove:
                    item.remove(**({"force": True} if kind == "container" else {}))
        return found


def _health(container) -> str:
    container.reload()
    return container.attrs.get("State", {}).get("Health", {}).get("Status", "none")


def _hostname(container) -> str:
    return container.attrs["Config"]["Hostname"]


def _cpu_counters(container) -> CpuCounters:
    """Cumulative CPU time and CFS throttling of one container, from the Engine API."""
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
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ENGINE_PROCESSES:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                continue
    return total
