"""A test cluster on one machine (`hscale cluster up|down`, `make cluster NODES=3`): N
Docker engines in containers, joined into a swarm with one manager, each with an address
of its own on a private bridge, and a registry every node pulls hscale's images from, as
on many machines with one's own registry. docs/cluster.md tells how and why.

Everything it creates carries the label `hscale.cluster`, so `down` finds it all, after a
failed or killed `up` too. The state file (cluster.json in hscale's cache directory) tells
other tools the engines' URLs and the registry's address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import docker
import psutil
import requests
from docker.errors import DockerException, NotFound
from docker.types import IPAMConfig, IPAMPool

from hscale import paths, project_env
from hscale.errors import UsageError
from hscale.procs import StartupError
from hscale.runtimes import images
from hscale.runtimes.docker import engine
from hscale.runtimes.images import push

LABEL = "hscale.cluster"  # its value: what the thing is (node, registry, network, ...)
NODE_LABEL = "hscale.cluster.node"  # a node container's name in the swarm (node-1, ...)
NETWORK = "hscale-cluster"  # the private bridge: nodes and registry, no route outside
EDGE_NETWORK = "hscale-cluster-edge"  # the registry's second leg, to publish on 127.0.0.1
REGISTRY = "hscale-cluster-registry"  # its container and its volume
ENGINE_PORT, SWARM_PORT, REGISTRY_PORT = 2375, 2377, 5000
MIN_NODES, MAX_NODES = 2, 6
DEFAULT_SUBNET = "192.168.213.0/24"  # not Docker's pools (172.17-31/16, 10/8 for overlays)
CONTEXT = paths.ROOT / "cluster"
READY_S = 90  # a node's dockerd answering, the swarm's nodes ready


@dataclass(frozen=True)
class Node:
    name: str  # node-1 is the manager
    address: str

    @property
    def engine(self) -> str:
        return f"tcp://{self.address}:{ENGINE_PORT}"


@dataclass(frozen=True)
class Cluster:
    nodes: list[Node]
    registry: str  # address:port the nodes pull from; image references name it
    registry_push: str  # 127.0.0.1:port, where this host's engine pushes to the same registry
    storage_driver: str = ""

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    def to_json(self) -> dict:
        return {
            "schema_version": 1,
            "manager": self.manager.engine,
            "nodes": [
                {**asdict(n), "engine": n.engine, "role": "manager" if i == 0 else "worker"}
                for i, n in enumerate(self.nodes)
            ],
            "registry": self.registry,
            "registry_push": self.registry_push,
            "network": NETWORK,
            "storage_driver": self.storage_driver,
        }

    @classmethod
    def from_json(cls, doc: dict) -> Cluster:
        nodes = [Node(n["name"], n["address"]) for n in doc["nodes"]]
        return cls(nodes, doc["registry"], doc["registry_push"], doc.get("storage_driver", ""))


def state_file() -> Path:
    return project_env.cache_dir() / "cluster.json"


def load(path: Path | None = None) -> Cluster:
    """The cluster `up` described last, or a UsageError when none is up."""
    path = path or state_file()
    try:
        return Cluster.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise UsageError("no cluster is up (make cluster NODES=3)") from None


def parse_nodes(raw: str | int) -> int:
    try:
        n = int(str(raw).strip())
    except ValueError:
        n = 0
    if not MIN_NODES <= n <= MAX_NODES:
        raise UsageError(
            f"NODES must be a whole number from {MIN_NODES} to {MAX_NODES}, got {str(raw)!r}"
        )
    return n


def subnet() -> ipaddress.IPv4Network:
    raw = os.environ.get("HSCALE_CLUSTER_SUBNET", DEFAULT_SUBNET)
    try:
        net = ipaddress.IPv4Network(raw)
    except ValueError as exc:
        raise UsageError(f"HSCALE_CLUSTER_SUBNET={raw}: {exc}") from None
    if net.num_addresses < 32:
        raise UsageError(f"HSCALE_CLUSTER_SUBNET={raw}: too small, give a /27 or larger")
    return net


def _addresses(net: ipaddress.IPv4Network, n: int) -> tuple[str, str, list[str]]:
    """(gateway, registry, nodes): .1, .2, then .11 upwards."""
    hosts = [str(h) for h in net.hosts()]
    return hosts[0], hosts[1], hosts[10 : 10 + n]


# -- up ------------------------------------------------------------------------------


def up(n: int, offline: str = "auto", log: Callable[[str], None] = print) -> tuple[Cluster, bool]:
    """A healthy swarm of n nodes, started unless one is up already; (it, started now).
    A partial cluster (a failed or killed `up`, a node gone) is removed first."""
    client = engine()
    found = _labelled(client)
    if any(found.values()):
        current, problem = health(client)
        if current is not None and len(current.nodes) == n:
            _write_state(current)
            return current, False
        if current is not None:
            raise UsageError(
                f"a cluster of {len(current.nodes)} nodes is up: make cluster-down first"
            )
        log(f"cluster: removing a partial cluster ({problem})")
        down(log)
    net = subnet()
    _check_free(client, net)
    try:
        node_image = images.ensure_on_base(CONTEXT / "node", "hscale-cluster-node", offline, log)
        registry_image = images.ensure_on_base(
            CONTEXT / "registry", "hscale-cluster-registry", offline, log
        )
    except UsageError as exc:  # our own images failing to build is no usage error
        raise StartupError(str(exc)) from None
    try:
        cluster = _start(client, n, net, node_image, registry_image, log)
    except BaseException as exc:
        log("cluster: start failed, removing what was started")
        down(lambda _line: None)
        if isinstance(exc, DockerException):
            raise StartupError(f"cluster: {exc}") from exc
        raise
    _write_state(cluster)
    return cluster, True


def _check_free(client: docker.DockerClient, net: ipaddress.IPv4Network) -> None:
    """The subnet must clash with no network of the engine and no address of this host."""
    taken: list[tuple[str, str]] = []
    for network in client.networks.list():
        for pool in (network.attrs.get("IPAM") or {}).get("Config") or []:
            taken.append((f"Docker network {network.name}", pool.get("Subnet", "")))
    for iface, addrs in psutil.net_if_addrs().items():
        taken += [(f"interface {iface}", f"{a.address}/{a.netmask}") for a in addrs if a.netmask]
    for what, raw in taken:
        with contextlib.suppress(ValueError):
            other = ipaddress.ip_network(raw, strict=False)
            if other.version == 4 and net.overlaps(other):
                raise UsageError(
                    f"the cluster's subnet {net} overlaps {what} ({other}): "
                    "set HSCALE_CLUSTER_SUBNET to a free one, e.g. 192.168.214.0/24"
                )


def _start(
    client: docker.DockerClient,
    n: int,
    net: ipaddress.IPv4Network,
    node_image: str,
    registry_image: str,
    log: Callable[[str], None],
) -> Cluster:
    gateway, registry_addr, node_addrs = _addresses(net, n)
    registry = f"{registry_addr}:{REGISTRY_PORT}"
    log(f"cluster: network {NETWORK} {net}, registry {registry}, {n} nodes")
    # Internal: no route out and none in from beyond this host; the host itself reaches
    # every address through the bridge. The registry publishes through the edge network,
    # since Docker publishes no port of an internal network.
    client.networks.create(
        NETWORK, driver="bridge", internal=True, labels={LABEL: "network"},
        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=str(net), gateway=gateway)]),
        options={"com.docker.network.bridge.name": NETWORK},
    )  # fmt: skip
    client.networks.create(EDGE_NETWORK, driver="bridge", labels={LABEL: "network"})
    client.volumes.create(REGISTRY, labels={LABEL: "registry"})
    registry_box = client.containers.create(
        registry_image, name=REGISTRY, hostname="registry", labels={LABEL: "registry"},
        volumes={REGISTRY: {"bind": "/var/lib/docker-registry", "mode": "rw"}},
        # Only on this host's loopback, on a port the engine picks: Docker trusts
        # 127.0.0.0/8 as an insecure registry, so the host pushes with no TLS and no
        # change to its daemon.
        ports={f"{REGISTRY_PORT}/tcp": ("127.0.0.1", None)},
        network=EDGE_NETWORK, read_only=True, tmpfs={"/tmp": ""}, cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"], mem_limit="256m", pids_limit=200,
    )  # fmt: skip
    client.networks.get(NETWORK).connect(registry_box, ipv4_address=registry_addr)
    registry_box.start()
    nodes = [Node(f"node-{i}", addr) for i, addr in enumerate(node_addrs, 1)]
    for node in nodes:
        _start_node(client, node, node_image, registry)
    registry_push = f"127.0.0.1:{_published_port(client)}"
    _wait_registry(registry_push)
    engines = {node.name: _wait_engine(client, node) for node in nodes}
    _form_swarm(nodes, engines, log)
    driver = engines[nodes[0].name].info().get("Driver", "")
    log(f"cluster: swarm of {n} nodes ready (storage driver {driver})")
    return Cluster(nodes, registry, registry_push, driver)


def _start_node(client: docker.DockerClient, node: Node, image: str, registry: str) -> None:
    volume = f"hscale-{node.name}-docker"
    labels = {LABEL: "node", NODE_LABEL: node.name}
    client.volumes.create(volume, labels=labels)
    api = client.api
    host_config = api.create_host_config(
        # /var/lib/docker on a volume (the host's disk), where overlay2 can mount.
        binds={volume: {"bind": "/var/lib/docker", "mode": "rw"}},
        # What --privileged gives but CAP_SYS_RESOURCE, which this project's CI VM lacks
        # (runc then fails to start a privileged container); entrypoint.sh says the rest.
        cap_add=["ALL"], cap_drop=["SYS_RESOURCE"], device_cgroup_rules=["a *:* rwm"],
        security_opt=["seccomp=unconfined", "apparmor=unconfined"], network_mode=NETWORK,
    )  # fmt: skip
    # `--security-opt systempaths=unconfined` of the CLI: dockerd writes /proc/sys.
    host_config.update(MaskedPaths=[], ReadonlyPaths=[])
    box = api.create_container(
        image, name=f"hscale-{node.name}", hostname=node.name, labels=labels,
        environment={"HSCALE_NODE_ADDR": node.address, "HSCALE_REGISTRY": registry,
                     **_forced_driver()},
        host_config=host_config,
        networking_config=api.create_networking_config(
            {NETWORK: api.create_endpoint_config(ipv4_address=node.address)}
        ),
    )  # fmt: skip
    api.start(box["Id"])


def _forced_driver() -> dict[str, str]:
    """HSCALE_STORAGE_DRIVER of this environment, for entrypoint.sh (else it probes)."""
    driver = os.environ.get("HSCALE_STORAGE_DRIVER")
    return {"HSCALE_STORAGE_DRIVER": driver} if driver else {}


def _published_port(client: docker.DockerClient) -> str:
    box = client.containers.get(REGISTRY)
    return box.attrs["NetworkSettings"]["Ports"][f"{REGISTRY_PORT}/tcp"][0]["HostPort"]


def _wait_registry(push: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"http://{push}/v2/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise StartupError(f"cluster: the registry does not answer on {push} after 30 s")
        time.sleep(0.3)


def _wait_engine(client: docker.DockerClient, node: Node) -> docker.DockerClient:
    deadline = time.monotonic() + READY_S
    while True:
        box = client.containers.get(f"hscale-{node.name}")
        if box.status == "exited":
            raise StartupError(f"cluster: {node.name} exited: {_log_tail(box)}")
        try:
            engine_client = docker.DockerClient(base_url=node.engine, timeout=30)
            engine_client.ping()
            return engine_client
        except (DockerException, requests.RequestException):
            pass
        if time.monotonic() > deadline:
            raise StartupError(
                f"cluster: {node.name}'s dockerd does not answer on {node.engine} after "
                f"{READY_S} s: {_log_tail(box)}"
            )
        time.sleep(0.5)


def _form_swarm(
    nodes: list[Node], engines: dict[str, docker.DockerClient], log: Callable[[str], None]
) -> None:
    """node-1 inits the swarm and manages it; the others join as workers; each node is
    labelled hscale.node=<its name>, for placement constraints."""
    manager = engines[nodes[0].name]
    addr = nodes[0].address
    manager.swarm.init(advertise_addr=addr, listen_addr=f"{addr}:{SWARM_PORT}")
    manager.swarm.reload()
    token = manager.swarm.attrs["JoinTokens"]["Worker"]
    for node in nodes[1:]:
        log(f"cluster: {node.name} joins the swarm")
        engines[node.name].swarm.join(
            remote_addrs=[f"{addr}:{SWARM_PORT}"], join_token=token,
            advertise_addr=node.address, listen_addr=f"{node.address}:{SWARM_PORT}",
        )  # fmt: skip
    deadline = time.monotonic() + READY_S
    while (problem := _swarm_problem(manager, len(nodes), label=True)) is not None:
        if time.monotonic() > deadline:
            raise StartupError(f"cluster: swarm not ready after {READY_S} s: {problem}")
        time.sleep(0.5)


def _swarm_problem(manager: docker.DockerClient, n: int, label: bool = False) -> str | None:
    """What keeps the swarm from n ready, labelled nodes (labelling them if asked), or None."""
    swarm_nodes = manager.nodes.list()
    ready = [x for x in swarm_nodes if x.attrs["Status"]["State"] == "ready"]
    if len(ready) != n or len(swarm_nodes) != n:
        return f"{len(ready)} of {n} nodes ready ({len(swarm_nodes)} in the swarm)"
    for x in swarm_nodes:
        name = x.attrs["Description"]["Hostname"]
        spec = x.attrs["Spec"]
        if spec.get("Labels", {}).get("hscale.node") != name:
            if not label:
                return f"{name} has no label hscale.node"
            x.update({**spec, "Labels": {**spec.get("Labels", {}), "hscale.node": name}})
            return f"labelling {name}"
    return None


def _log_tail(box, lines: int = 5) -> str:
    with contextlib.suppress(DockerException):
        text = box.logs(tail=lines).decode(errors="replace").strip()
        return " | ".join(text.splitlines()) or "no output"
    return "no log"


def _write_state(cluster: Cluster) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cluster.to_json(), indent=2) + "\n")


# -- health, down --------------------------------------------------------------------


def _labelled(client: docker.DockerClient) -> dict[str, list]:
    where = {"label": LABEL}
    return {
        "container": client.containers.list(all=True, filters=where, ignore_removed=True),
        "network": client.networks.list(filters=where),
        "volume": client.volumes.list(filters=where),
    }


def health(client: docker.DockerClient | None = None) -> tuple[Cluster | None, str]:
    """(the cluster, "") when every part of one is up and its swarm is whole, else (None,
    what is wrong). Read from the engine, not the state file."""
    client = client or engine()
    boxes = client.containers.list(all=True, filters={"label": LABEL}, ignore_removed=True)
    nodes_boxes = sorted(
        (b for b in boxes if b.labels.get(LABEL) == "node"),
        key=lambda b: int(b.labels[NODE_LABEL].rsplit("-", 1)[1]),
    )
    registry_box = next((b for b in boxes if b.labels.get(LABEL) == "registry"), None)
    if registry_box is None or not nodes_boxes:
        return None, "registry or nodes missing"
    down_now = [b.name for b in [registry_box, *nodes_boxes] if b.status != "running"]
    if down_now:
        return None, f"not running: {', '.join(down_now)}"
    nodes = []
    for box in nodes_boxes:
        address = box.attrs["NetworkSettings"]["Networks"].get(NETWORK, {}).get("IPAddress")
        nodes.append(Node(box.labels[NODE_LABEL], address or ""))
    registry_ip = registry_box.attrs["NetworkSettings"]["Networks"].get(NETWORK, {})
    try:
        manager = docker.DockerClient(base_url=nodes[0].engine, timeout=10)
        problem = _swarm_problem(manager, len(nodes))
        driver = manager.info().get("Driver", "")
    except (DockerException, requests.RequestException) as exc:
        return None, f"{nodes[0].name}'s engine does not answer ({type(exc).__name__})"
    if problem:
        return None, problem
    registry = f"{registry_ip.get('IPAddress')}:{REGISTRY_PORT}"
    return Cluster(nodes, registry, f"127.0.0.1:{_published_port(client)}", driver), ""


def down(log: Callable[[str], None] = print) -> list[str]:
    """Remove every container, network and volume labelled hscale.cluster (and the state
    file); what was removed."""
    client = engine()
    removed = []
    for kind, things in _labelled(client).items():
        for thing in things:
            try:
                if kind == "container":
                    thing.remove(force=True, v=True)
                elif kind == "volume":
                    thing.remove(force=True)
                else:
                    thing.remove()
            except NotFound:
                continue
            removed.append(f"{kind} {thing.name}")
            log(f"cluster: removed {kind} {thing.name}")
    state_file().unlink(missing_ok=True)
    return removed


# -- images --------------------------------------------------------------------------


def push_images(
    images: list[str], cluster: Cluster | None = None, log: Callable[[str], None] = print
) -> dict[str, str]:
    """Make these images of this host's engine pullable by every node: push them to the
    cluster's registry through 127.0.0.1; {image: reference the nodes pull it by}. Only the
    registry's address differs between the two names, so both name the same manifest."""
    cluster = cluster or load()
    return push(images, cluster.registry_push, cluster.registry, log)


def describe(cluster: Cluster) -> str:
    lines = [f"swarm of {len(cluster.nodes)} nodes, storage driver {cluster.storage_driver}"]
    for i, node in enumerate(cluster.nodes):
        lines.append(f"  {node.name}  {node.engine}  {'manager' if i == 0 else 'worker'}")
    lines.append(f"  registry  {cluster.registry} (this host pushes to {cluster.registry_push})")
    lines.append(f"state: {state_file()}")
    lines.append(f"try: DOCKER_HOST={cluster.manager.engine} docker node ls")
    return "\n".join(lines)
