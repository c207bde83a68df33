"""The swarm runtime: the same docker-compose.yml deployed as a stack (`docker stack
deploy`), the app service scaled for each N. Works on a single-node swarm as on many
machines; CPU counters cover the containers on this node."""

from __future__ import annotations

import subprocess
import time

from hscale import __version__, paths
from hscale.errors import UsageError
from hscale.procs import StartupError
from hscale.runtimes import images
from hscale.runtimes.base import RuntimeInfo
from hscale.runtimes.compose import COMPOSE_FILE
from hscale.runtimes.docker import INIT_STORE, DockerRuntime, engine
from hscale.runtimes.stackfile import stack_file

STACK_LABEL = "com.docker.stack.namespace"


class SwarmRuntime(DockerRuntime):
    name = "swarm"
    project_label = STACK_LABEL

    def _service_label(self, service: str) -> str:
        return f"com.docker.swarm.service.name={self.project}_{service}"

    def preflight(self) -> None:
        super().preflight()
        swarm = engine().info().get("Swarm", {})
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise UsageError(
                "RUNTIME=swarm needs this Docker engine to be a swarm manager "
                "(`docker swarm init`, or join one); or use RUNTIME=docker"
            )

    @property
    def endpoint(self) -> str:
        # Published in host mode on this node (see hscale/runtimes/stackfile.py).
        return self.published

    def loadgen_launcher(self):
        # Locust workers as swarm services are not built yet: LOADGEN_WORKERS forks them
        # as processes on this host (see README, "Many machines").
        return None

    def env(self) -> dict[str, str]:
        return {**super().env(), "UPSTREAM_HOST": "tasks.app"}

    def start(self, n: int) -> None:
        self._started = True
        self.extra_env = images.build(self.compose(), self.s.offline, self.log, self.s.store)
        text, self.dropped = stack_file(COMPOSE_FILE.read_text(), self.s.store)
        for note in self.dropped:
            self.log(f"swarm: {note}")
        path = self.workdir / "stack.yml"  # variables unfilled: no password in it
        path.write_text(text)
        self._docker("stack", "deploy", "--compose-file", str(path), self.project)
        self._start_store()
        self.resize(n)

    def _start_store(self) -> None:
        """The stack deployed the store and no replica: wait for the store's task (swarm
        reports it running once its healthcheck passes), then create the schema from a
        one-off container of the app image on the stack's backend network."""
        if self.store_service is None:
            return
        deadline = time.monotonic() + 90
        while not self._running_tasks(self.store_service):
            if time.monotonic() > deadline:
                raise StartupError(f"swarm: no running {self.store_service} task after 90 s")
            time.sleep(0.5)
        if not self.store_entry.needs_init:
            return
        dsn = f"postgresql://hscale:{self.postgres_password}@postgres:5432/hscale"
        env = {"APP_STORE": self.s.store, "APP_POSTGRES_DSN": dsn}
        self._docker(
            "run", "--rm", "--network", f"{self.project}_backend",
            "--label", f"{STACK_LABEL}={self.project}",
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
            # names only: the values come from this process's environment, not argv
            *(arg for name in env for arg in ("-e", name)),
            f"hscale-app:{__version__}", *INIT_STORE,
            extra_env=env,
        )  # fmt: skip

    def resize(self, n: int) -> None:
        self._docker("service", "scale", "--detach", f"{self.project}_app={n}")
        deadline = time.monotonic() + 120
        while True:
            running = self._running_tasks("app")
            ready = len(running) == n and self._running_tasks("nginx")
            if ready and self._nginx_routes_to(set(self.replicas())):
                self._set_cpu_period(self._containers("app"))  # those on this node
                return
            if time.monotonic() > deadline:
                raise StartupError(f"swarm: {len(running)} of {n} app tasks running after 120 s")
            time.sleep(0.5)

    def replicas(self) -> list[str]:
        # Container hostnames default to the short container id, on every node.
        return sorted(
            t["Status"]["ContainerStatus"]["ContainerID"][:12] for t in self._running_tasks("app")
        )

    def info(self) -> RuntimeInfo:
        info = super().info()
        info.details["stack"] = self.project
        info.details["swarm_limits_dropped"] = getattr(self, "dropped", [])
        return info

    def stop(self) -> None:
        if self._stopped or not self._started:
            return
        self._stopped = True
        self._docker("stack", "rm", self.project, check=False)
        # `stack rm` returns at once; containers and networks go away afterwards.
        deadline = time.monotonic() + 60
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.5)
        self.leftovers(remove=True)

    def _running_tasks(self, service: str) -> list[dict]:
        assert self.client is not None
        try:
            svc = self.client.services.get(f"{self.project}_{service}")
        except Exception:  # noqa: BLE001  (not created yet)
            return []
        tasks = svc.tasks(filters={"desired-state": "running"})
        return [t for t in tasks if t["Status"]["State"] == "running"]

    def _docker(self, *args: str, check: bool = True, extra_env: dict | None = None) -> None:
        done = subprocess.run(
            ["docker", *args],
            env={**self.env(), **(extra_env or {})},
            cwd=paths.ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and done.returncode != 0:
            raise StartupError(f"docker {' '.join(args[:2])} failed: {done.stderr.strip()[-1000:]}")
