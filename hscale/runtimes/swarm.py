"""The swarm runtime: the same docker-compose.yml deployed as a stack (`docker stack
deploy`), the app service scaled for each N. Works on a single-node swarm as on many
machines; CPU counters cover the containers on this node. Your app's image (APP, IMAGE)
must be on every node that runs a replica: hscale builds or checks it on this one."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException

from hscale import cluster as testcluster
from hscale import loadgen, paths
from hscale.errors import UsageError
from hscale.procs import StartupError, free_port
from hscale.runtimes import forwarder, images
from hscale.runtimes.base import RuntimeInfo
from hscale.runtimes.compose import app_environment
from hscale.runtimes.docker import INIT_STORE, DockerRuntime, _hostname, _tail, engine
from hscale.runtimes.stackfile import place, stack_file
from hscale.settings import NODE_FAULTS

STACK_LABEL = "com.docker.stack.namespace"
REFERENCE_READY_S = 120  # the reference app's tasks: running and routed within this
NODE_KEY = "hscale.node"  # the node label placement uses (`make cluster` sets it)


class SwarmRuntime(DockerRuntime):
    name = "swarm"
    project_label = STACK_LABEL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._forwarder: Any = None
        self._published_on: list[str] = []
        self.cluster: testcluster.Cluster | None = None  # None: this host's engine
        self.nodes: dict[str, docker.DockerClient] = {}  # every node's engine, by name
        self.placement: dict[str, str] = {}  # nginx, store, loadgen: node
        self.image_refs: dict[str, str] = {}  # image variable: its reference in a registry
        self.own_locust_image: str | None = None  # LOCUSTFILE for workers on a node (start)
        self._struck_nodes: dict[str, str] = {}  # node: the fault that struck it, until heal()

    def _service_label(self, service: str) -> str:
        return f"com.docker.swarm.service.name={self.project}_{service}"

    def preflight(self) -> None:
        self.cluster = self._find_cluster()
        if self.cluster is None:
            super().preflight()
            assert self.client is not None
            swarm = self.client.info().get("Swarm", {})
            if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
                raise UsageError(
                    "RUNTIME=swarm needs this Docker engine to be a swarm manager "
                    "(`docker swarm init`, or join one), or a cluster (make cluster); "
                    "or use RUNTIME=docker"
                )
            self.nodes = {self.client.info()["Name"]: self.client}
        else:
            super().preflight()  # this engine builds the images; the cluster runs them
            self.client = docker.DockerClient(base_url=self.cluster.manager.engine, timeout=30)
            self.nodes = {
                n.name: docker.DockerClient(base_url=n.engine, timeout=30)
                for n in self.cluster.nodes
            }
        self.placement = self._placement()

    def _find_cluster(self) -> testcluster.Cluster | None:
        """SWARM=cluster: the test cluster, which must be up; auto: it when it is up."""
        if self.s.swarm == "local":
            return None
        found, problem = testcluster.health()
        if found is None and self.s.swarm == "cluster":
            raise UsageError(f"SWARM=cluster: no cluster is up ({problem}); make cluster NODES=3")
        return found

    def _placement(self) -> dict[str, str]:
        """{service: node} for nginx, the store and the load generator: where the user
        said, else (on a cluster) nginx and the store on the manager and the Locust
        workers on the last node, of 3 or more, with no replica beside them."""
        chosen = {"nginx": self.s.place_nginx, "store": self.s.place_store,
                  "loadgen": self.s.place_loadgen}  # fmt: skip
        if self.cluster is not None:
            names = [n.name for n in self.cluster.nodes]
            defaults = {"nginx": names[0], "store": names[0]}
            defaults |= {"loadgen": names[-1]} if len(names) >= 3 else {}
            chosen = {k: v or defaults.get(k) for k, v in chosen.items()}
        for knob, node in chosen.items():
            if node is not None and node not in self._node_labels():
                raise UsageError(
                    f"PLACE_{knob.upper()}={node}: no swarm node has the label hscale.node={node} "
                    f"(nodes: {', '.join(sorted(self._node_labels())) or 'none labelled'})"
                )
        return {k: v for k, v in chosen.items() if v is not None}

    def _node_labels(self) -> set[str]:
        assert self.client is not None
        labels = (n.attrs["Spec"].get("Labels") or {} for n in self.client.nodes.list())
        return {lab[NODE_KEY] for lab in labels if NODE_KEY in lab}

    def _engines(self) -> list[docker.DockerClient]:
        return list(self._live_nodes().values())

    def _live_nodes(self) -> dict[str, docker.DockerClient]:
        """Every node's engine but a stopped node's (FAULT=stop-node, until heal())."""
        gone = {n for n, fault in self._struck_nodes.items() if fault == "stop-node"}
        return {name: client for name, client in self.nodes.items() if name not in gone}

    def node_of(self) -> dict[str, str]:
        """{component: node} of every container of the stack now: where its CPU is read."""
        out = {}
        names = {"nginx": "nginx", self.store_service: "store"}
        for node, client in self._live_nodes().items():
            labels = {"label": f"{STACK_LABEL}={self.project}"}
            for c in self._listed(client, labels):
                service = c.labels.get("com.docker.swarm.service.name", "")
                short = service.removeprefix(f"{self.project}_")
                name = _hostname(c) if short == "app" else names.get(short)
                if name:
                    out[name] = node
        if "loadgen" in self.placement:  # its workers' CPU is read there
            out["loadgen"] = self.placement["loadgen"]
        return out

    @property
    def publish_address(self) -> str:
        """On a cluster, the manager's address (the forwarder runs there); else the knob."""
        return self.cluster.manager.address if self.cluster else self.s.publish_address

    @property
    def published(self) -> str:
        if self.cluster is None:
            return super().published
        return f"http://{self.publish_address}:{self.s.port}"

    @property
    def endpoint(self) -> str:
        """The forwarder's address on its own bridge (hscale/runtimes/forwarder.py); on a
        cluster, that bridge is inside the manager node: its published address."""
        if self.cluster is not None:
            return self.published
        if self._endpoint is None:
            self._endpoint = f"http://{forwarder.address(self._forwarder, self.project)}:8080"
        return self._endpoint

    def loadgen_launcher(self):
        """With a load generator's node (PLACE_LOADGEN, or a cluster's last node): Locust's
        workers as a service there, its master here. Else Locust runs on this host."""
        return self._launch_locust_service if "loadgen" in self.placement else None

    def _containerised_load(self) -> bool:
        return "loadgen" in self.placement

    def _launch_locust_service(self, plan, out: Path, hscale_env: dict[str, str]):
        """LOADGEN_WORKERS (at least 1) Locust workers as a service on the load generator's
        node, on the stack's frontend network (they reach nginx by name, as a load
        balancer in front would), and the command for this point's master on this host,
        where the figures land. The master tells its workers the host and the HSCALE_*
        options in each spawn message; they connect to it on this host's address on the
        nodes' network. Workers quit with the master, so each point starts them afresh."""
        workers = max(1, plan.workers)
        bind = self._address_toward_nodes()
        port = free_port(bind)
        service = f"{self.project}_locust-worker"
        self._docker("service", "rm", service, check=False)
        image, own, env = self.env()["LOADGEN_IMAGE"], None, []
        if plan.own_file:  # your Locust file travels in an image of its own (start)
            image = self.image_refs.get("OWN_LOCUST_IMAGE") or self.own_locust_image or image
            own = f"{images.OWN_LOCUST_DIR}/{Path(plan.own_file).name}"
            env = ["--env", f"{loadgen.OWN_FILE_ENV}=1"]
        files = loadgen.locustfiles(plan, "/loadtests", own_file=own)
        self._docker(
            "service", "create", "--detach", "--name", service, *env,
            "--label", f"{STACK_LABEL}={self.project}",
            "--container-label", f"{STACK_LABEL}={self.project}",
            "--constraint", f"node.labels.{NODE_KEY} == {self.placement['loadgen']}",
            "--network", f"{self.project}_frontend", "--replicas", str(workers),
            "--restart-condition", "none", "--read-only", "--mount", "type=tmpfs,target=/tmp",
            "--limit-cpu", "1", "--limit-memory", "512m",  # as docker-compose.yml's workers
            image, "-f", files, "--worker",
            "--master-host", bind, "--master-port", str(port),
        )  # fmt: skip
        self._stop_sampler.set()
        self._locust_cpu = {"started": 0.0}  # new workers: their counters start at 0
        self._stop_sampler = threading.Event()
        threading.Thread(target=self._sampler, args=(self._stop_sampler,), daemon=True).start()
        contained = dataclasses.replace(plan, host="http://nginx:8080")
        options = loadgen.locust_options(
            contained, loadgen.locustfiles(plan, str(paths.LOADTESTS_DIR)), str(out)
        )
        master = ["--master", "--master-bind-host", bind, "--master-bind-port", str(port),
                  "--expect-workers", str(workers)]  # fmt: skip
        return [sys.executable, "-m", "locust", *options, *master], {}

    def _address_toward_nodes(self) -> str:
        """This host's address on the cluster's network (its gateway), where the nodes'
        containers reach it; on a single node, the swarm's own address."""
        if self.cluster is not None:
            host = engine()
            ipam = host.networks.get(testcluster.NETWORK).attrs["IPAM"]["Config"][0]
            return ipam["Gateway"]
        assert self.client is not None
        return self.client.info()["Swarm"]["NodeAddr"]

    def env(self) -> dict[str, str]:
        return {**super().env(), "UPSTREAM_HOST": "tasks.app", **self.image_refs}

    def _cli_env(self) -> dict[str, str]:
        """The docker CLI's environment: the cluster's manager, when on one."""
        manager = {"DOCKER_HOST": self.cluster.manager.engine} if self.cluster else {}
        return {**self.env(), **manager}

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
        services = {"nginx": "nginx", "store": self.store_service}
        pinned = {
            svc: self.placement[k] for k, svc in services.items() if svc and k in self.placement
        }
        text = place(text, NODE_KEY, pinned, avoid=self.placement.get("loadgen"))
        path = self.workdir / "stack.yml"  # variables unfilled: no password in it
        path.write_text(text)
        own = self.target.locustfile
        if self._containerised_load() and own != paths.locustfile(self.s.scenario):
            self.own_locust_image = images.locust_image(own, self.env()["LOADGEN_IMAGE"], self.log)
        if self.cluster is not None or self.s.registry:
            self._push_images()
        self._docker("stack", "deploy", "--compose-file", str(path), self.project)
        assert self.client is not None
        self._forwarder = forwarder.run(
            self.client, self.project, {STACK_LABEL: self.project},
            self.env()["NGINX_PROXY_IMAGE"], self.publish_address, self.s.port,
        )  # fmt: skip
        self._published_on = forwarder.bindings(self._forwarder)
        self._start_store()
        self._app_init()
        self.resize(n)

    def _push_images(self) -> None:
        """Every image the stack names, pushed to the cluster's registry or REGISTRY; the
        stack, the forwarder and the one-off containers then name them there (each node
        pulls)."""
        env, stack = self.env(), (self.workdir / "stack.yml").read_text()
        used = set(re.findall(r"\$\{(\w+_IMAGE)\b", stack)) | {"NGINX_PROXY_IMAGE"}
        used |= {"LOADGEN_IMAGE"} if self._containerised_load() else set()
        names = {var: env[var] for var in sorted(used) if env.get(var)}
        if self.app_image:
            names["APP_IMAGE"] = self.app_image
        if self.own_locust_image:
            names["OWN_LOCUST_IMAGE"] = self.own_locust_image
        wanted = sorted(set(names.values()))
        if self.cluster is not None:
            refs = testcluster.push_images(wanted, self.cluster, self.log)
        else:
            assert self.s.registry is not None
            refs = images.push(wanted, self.s.registry, self.s.registry, self.log)
        self.image_refs = {var: refs[image] for var, image in names.items()}
        self.app_image = self.image_refs["APP_IMAGE"]

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
            env={**self._cli_env(), **env}, cwd=paths.ROOT, capture_output=True, text=True,
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
                mine = self._containers("app")  # this host's (see DockerRuntime._deaf)
                problem = self._deaf(mine) or self._routing_problem(set(self.replicas())) or ""
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

    def inject(self, fault: str, seconds: float) -> dict[str, Any]:
        if fault not in NODE_FAULTS:
            return super().inject(fault, seconds)
        node = self._victim_node()
        there = sorted(r for r, n in self.node_of().items() if n == node and r in self.replicas())
        t0 = time.monotonic()
        if fault == "drain-node":  # swarm stops its tasks and starts them elsewhere
            self._set_availability(node, "drain")
        else:  # stop-node: the machine gone, as the test cluster can make it go
            if self.cluster is None:
                raise UsageError("FAULT=stop-node needs the test cluster (make cluster)")
            engine().containers.get(f"hscale-{node}").kill()
        self._struck_nodes[node] = fault
        return {"node": node, "replicas_there": there, "took_s": round(time.monotonic() - t0, 3)}

    def _victim_node(self) -> str:
        """The node of the last replica that shares it with neither nginx nor the store."""
        where = self.node_of()
        spared = {where.get("nginx"), where.get("store"), self.placement.get("loadgen")}
        for replica in sorted(self.replicas(), reverse=True):
            if where.get(replica) not in spared:
                return where[replica]
        raise UsageError(
            "drain-node and stop-node need a replica on a node without nginx or the store "
            "(a swarm of 2 or more nodes, and N large enough to reach a second node)"
        )

    def _set_availability(self, node: str, availability: str) -> None:
        assert self.client is not None
        for found in self.client.nodes.list(filters={"node.label": f"{NODE_KEY}={node}"}):
            spec = {**found.attrs["Spec"], "Availability": availability}
            found.update(spec)

    def heal(self) -> None:
        """Swarm starts a task in place of a killed one; wait for N of them behind nginx.
        A drained node is made active again, a stopped one started and back in the swarm,
        and the replicas spread over the nodes again (all restarted at once)."""
        for t in self._resumers:
            t.join()
        self._resumers.clear()
        struck = dict(self._struck_nodes)
        for node, fault in struck.items():
            if fault == "stop-node":
                engine().containers.get(f"hscale-{node}").start()
                self._wait_node_ready(node)
            self._set_availability(node, "active")
        self._struck_nodes.clear()
        if struck:  # swarm does not move tasks back by itself: spread them again
            self._docker("service", "update", "--force", "--detach",
                         "--update-parallelism", "0", f"{self.project}_app")  # fmt: skip
            time.sleep(2)  # the old tasks' shutdown begins before resize() counts
        self.resize(self._n)

    def _wait_node_ready(self, node: str, timeout: float = 120) -> None:
        assert self.client is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.client.nodes.list(filters={"node.label": f"{NODE_KEY}={node}"})
            if found and found[0].attrs["Status"]["State"] == "ready":
                return
            time.sleep(1)
        raise StartupError(f"swarm: {node} not ready {timeout:g} s after it was started again")

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
        info.details["nodes"] = sorted(self.nodes)
        info.details["placement"] = (
            {
                **{k: f"node.labels.{NODE_KEY} == {v}" for k, v in self.placement.items()},
                "app": f"spread over node.labels.{NODE_KEY}"
                + (f", not {self.placement['loadgen']}" if "loadgen" in self.placement else ""),
            }
            if self.placement
            else "none (one node)"
        )
        if self.cluster is not None:
            info.details["cluster"] = {
                "manager": self.cluster.manager.engine,
                "registry": self.cluster.registry,
                "images": self.image_refs,
                "cpu_read": "each node's Engine API (stats), in parallel, at the window edges",
            }
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
            env={**self._cli_env(), **(extra_env or {})},
            cwd=paths.ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and done.returncode != 0:
            raise StartupError(f"docker {' '.join(args[:2])} failed: {done.stderr.strip()[-1000:]}")
