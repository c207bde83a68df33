"""The swarm runtime: the same docker-compose.yml deployed as a stack (`docker stack
deploy`), the app service scaled for each N. Works on a single-node swarm as on many
machines; CPU counters cover the containers on this node. Your app's image (APP, IMAGE)
must be on every node that runs a replica: hscale builds or checks it on this one."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from docker.errors import DockerException

from hscale import paths
from hscale.errors import UsageError
from hscale.procs import StartupError
from hscale.runtimes import forwarder, images
from hscale.runtimes.base import RuntimeInfo
from hscale.runtimes.compose import app_environment
from hscale.runtimes.docker import INIT_STORE, DockerRuntime, _tail, engine
from hscale.runtimes.stackfile import stack_file

STACK_LABEL = "com.docker.stack.namespace"
REFERENCE_READY_S = 120  # the reference app's tasks: running and routed within this


class SwarmRuntime(DockerRuntime):
    name = "swarm"
    project_label = STACK_LABEL

    _forwarder: Any = None
    _published_on: list[str] = []

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
        """The forwarder's address on its own bridge (hscale/runtimes/forwarder.py)."""
        if self._endpoint is None:
            self._endpoint = f"http://{forwarder.address(self._forwarder, self.project)}:8080"
        return self._endpoint

    def loadgen_launcher(self):
        # Locust workers as swarm services are not built yet: LOADGEN_WORKERS forks them
        # as processes on this host (see README, "Many machines").
        return None

    def env(self) -> dict[str, str]:
        return {**super().env(), "UPSTREAM_HOST": "tasks.app"}

    def start(self, n: int) -> None:
        self._started = True
        skip = () if self.target.reference else ("app",)  # your app's image is not ./app
        self.extra_env = images.build(
            self.compose(), self.s.offline, self.log, self.s.store, skip=skip
        )
        self.app_image = self._app_image()
        base = self.compose().base  # your app: compose.for_your_app's file
        text, self.dropped = stack_file(base.read_text(), self.s.store)
        for note in self.dropped:
            self.log(f"swarm: {note}")
        path = self.workdir / "stack.yml"  # variables unfilled: no password in it
        path.write_text(text)
        self._docker("stack", "deploy", "--compose-file", str(path), self.project)
        assert self.client is not None
        self._forwarder = forwarder.run(
            self.client, self.project, {STACK_LABEL: self.project},
            self.env()["NGINX_PROXY_IMAGE"], self.s.publish_address, self.s.port,
        )  # fmt: skip
        self._published_on = forwarder.bindings(self._forwarder)
        self._start_store()
        self._app_init()
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
        if not self.store_entry.needs_init or not self.target.reference:
            return
        done = self._one_off(list(INIT_STORE))
        if done.returncode != 0:
            raise StartupError(f"swarm: init-store failed: {_tail(done.stdout + done.stderr)}")

    def _app_init(self) -> None:
        """APP_INIT, once, in a one-off container of the app image on the stack's backend
        network, with the replicas' environment, before any replica starts."""
        if not self.target.init:
            return
        self.log(f"app: APP_INIT {self.target.init}")
        done = self._one_off(["-c", self.target.init], entrypoint="sh")
        log = self.workdir / "logs" / "app-init.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise StartupError(
                f"APP_INIT failed with code {done.returncode} (log {log}): "
                f"{_tail(done.stdout + done.stderr)}"
            )

    def _one_off(
        self, argv: list[str], entrypoint: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A container of the app image beside the stack (not a task), as hardened as the
        replicas, with their environment; its exit code and output."""
        env = app_environment(self.env(), self.s.store, user=not self.target.reference)
        assert self.app_image is not None
        return subprocess.run(
            ["docker", "run", "--rm", "--network", f"{self.project}_backend",
             "--label", f"{STACK_LABEL}={self.project}",
             "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
             "--security-opt", "no-new-privileges:true",
             *(["--entrypoint", entrypoint] if entrypoint else []),
             # names only: the values come from this process's environment, not argv
             *(arg for name in env for arg in ("-e", name)),
             self.app_image, *argv],
            env={**self.env(), **env}, cwd=paths.ROOT, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=max(120.0, self.s.ready_timeout),
        )  # fmt: skip

    def resize(self, n: int) -> None:
        self._n = n
        self._docker("service", "scale", "--detach", f"{self.project}_app={n}")
        timeout = REFERENCE_READY_S if self.target.reference else self.s.ready_timeout
        deadline = time.monotonic() + timeout
        while True:
            self._fail_if_exited()
            running = self._running_tasks("app")
            if len(running) == n and self._running_tasks("nginx"):
                problem = self._routing_problem(set(self.replicas())) or ""
                if not problem:
                    self._set_cpu_period(self._containers("app"))  # those on this node
                    return
            else:
                problem = f"{len(running)} of {n} app tasks running"
            if time.monotonic() > deadline:
                raise StartupError(
                    f"swarm: {n} app replica(s) not answering {self.target.health_path} "
                    f"through nginx after {timeout:g} s ({problem})"
                )
            time.sleep(0.5)

    def _fail_if_exited(self) -> None:
        """An app task that failed (your app failed to import, a bad command): swarm would
        restart it forever; fail the start at once, naming its error. (The reference app
        keeps swarm's restarts: its replicas wait on the store.)"""
        if self.target.reference:
            return
        for task in self._tasks("app"):
            status = task["Status"]
            cid = status.get("ContainerStatus", {}).get("ContainerID", "")
            if status["State"] not in ("failed", "rejected") or cid in self._killed:
                continue
            raise StartupError(
                f"swarm: app task {cid[:12] or task['ID'][:12]} ({self.app_image}) "
                f"{status['State']}: {status.get('Err', '')}: {_tail(self._container_log(cid))}"
            )

    def _container_log(self, cid: str) -> str:
        """A task's container log, when the container is on this node."""
        assert self.client is not None
        try:
            return self.client.containers.get(cid).logs(tail=200).decode(errors="replace")
        except (DockerException, ValueError):
            return ""

    def casualties(self) -> list[str]:
        """Swarm replaces failed tasks itself (old ones stay exited): count what runs."""
        down = [f"{self._n - len(self._running_tasks('app'))} app task(s) not running"]
        down = down if len(self._running_tasks("app")) < self._n else []
        for service in ("nginx", *([self.store_service] if self.store_service else [])):
            if not self._running_tasks(service):
                down.append(f"{service} task not running")
        return down

    def heal(self) -> None:
        """Swarm starts a task in place of a killed one; wait for N of them behind nginx."""
        for t in self._resumers:
            t.join()
        self._resumers.clear()
        self.resize(self._n)

    def replicas(self) -> list[str]:
        # Container hostnames default to the short container id, on every node.
        return sorted(
            t["Status"]["ContainerStatus"]["ContainerID"][:12] for t in self._running_tasks("app")
        )

    def upstreams(self) -> dict[str, str]:
        """Each running app task's address on the stack's backend network: what nginx
        reaches through tasks.app, on whichever node the task runs."""
        network, out = f"{self.project}_backend", {}
        for task in self._running_tasks("app"):
            name = task["Status"]["ContainerStatus"]["ContainerID"][:12]
            for attachment in task.get("NetworksAttachments", []):
                if attachment["Network"]["Spec"]["Name"] == network:
                    for address in attachment.get("Addresses", []):
                        out[f"{address.split('/')[0]}:{self.target.port}"] = name
        return out

    def info(self) -> RuntimeInfo:
        info = super().info()
        info.details["stack"] = self.project
        info.details["swarm_limits_dropped"] = getattr(self, "dropped", [])
        if self._forwarder is not None:  # as the engine bound it, not as asked
            info.details["published_on"] = self._published_on
        return info

    def stop(self) -> None:
        if self._stopped or not self._started:
            return
        self._stopped = True
        if self.client is not None:
            forwarder.remove(self.client, self.project)
        self._docker("stack", "rm", self.project, check=False)
        # `stack rm` returns at once; containers and networks go away afterwards.
        deadline = time.monotonic() + 60
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.5)
        self.leftovers(remove=True)

    def _running_tasks(self, service: str) -> list[dict]:
        tasks = self._tasks(service, {"desired-state": "running"})
        return [t for t in tasks if t["Status"]["State"] == "running"]

    def _tasks(self, service: str, filters: dict | None = None) -> list[dict]:
        assert self.client is not None
        try:
            svc = self.client.services.get(f"{self.project}_{service}")
        except Exception:  # noqa: BLE001  (not created yet)
            return []
        return svc.tasks(filters=filters)

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
