"""Swarm's way in: a TCP forwarder that publishes nginx on one chosen address.

Swarm cannot bind a published port to an address (its port config has no host IP): a
published nginx would take PORT on every interface of the node, and with it the app's
unauthenticated write endpoints. So the stack publishes nothing. This plain container,
nginx's own image running nginx's stream module, joins the stack's (attachable) frontend
network and a bridge network of its own, and is published on PUBLISH_ADDRESS:PORT only.
The load goes to its address on that bridge (as the docker runtime's goes to nginx's),
which skips docker-proxy's userland copy; the stream proxy itself costs little (it
copies bytes, it parses no HTTP)."""

from __future__ import annotations

from typing import Any

from docker.errors import DockerException

LISTEN = 8080  # inside the container, as nginx's own image expects (it runs as non-root)
# The stream module is built in to the official nginx image and a Debian package
# (libnginx-mod-stream, in hscale's registry-less base) loaded at run time.
CONFIG = r"""
mod=/usr/lib/nginx/modules/ngx_stream_module.so
{ [ -f "$mod" ] && echo "load_module $mod;"; cat <<EOF
worker_processes auto;
pid /tmp/forwarder.pid;
error_log stderr warn;
events { worker_connections 8192; }
stream {
    # Docker's DNS, every few seconds: nginx's task may be replaced (a new address).
    resolver 127.0.0.11 valid=5s ipv6=off;
    server {
        listen LISTEN backlog=4096;
        set \$nginx nginx:8080;
        proxy_pass \$nginx;
    }
}
EOF
} > /tmp/forwarder.conf
exec nginx -e stderr -c /tmp/forwarder.conf -g 'daemon off;'
""".replace("LISTEN", str(LISTEN))


def run(
    client: Any, project: str, labels: dict[str, str], image: str, address: str, port: int
) -> Any:
    """Start the forwarder of stack `project` (its frontend network must exist) and return
    its container. Everything it makes carries `labels`, so the stack's cleanup finds it."""
    edge = client.networks.create(f"{project}_edge", driver="bridge", labels=labels)
    container = client.containers.run(
        image,
        entrypoint=["/bin/sh", "-c", CONFIG],
        name=f"{project}_forwarder",
        detach=True,
        labels={**labels, "hscale.role": "forwarder"},
        network=edge.name,
        ports={f"{LISTEN}/tcp": (address, port)},
        user="10002:10002",
        read_only=True,
        tmpfs={"/tmp": "rw,size=16m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        pids_limit=64,
    )
    client.networks.get(f"{project}_frontend").connect(container)
    return container


def address(container: Any, project: str) -> str:
    """The forwarder's address on its own bridge: where the load generator connects."""
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][f"{project}_edge"]["IPAddress"]


def bindings(container: Any) -> list[str]:
    """The host addresses the engine bound for the forwarder ("127.0.0.1:8080")."""
    container.reload()
    ports = container.attrs["HostConfig"]["PortBindings"] or {}
    return [f"{b['HostIp'] or '0.0.0.0'}:{b['HostPort']}" for v in ports.values() for b in v]


def remove(client: Any, project: str) -> None:
    """The forwarder and its bridge, if there: before `stack rm`, whose frontend network
    cannot go while the forwarder is attached to it."""
    for kind, name in (("containers", f"{project}_forwarder"), ("networks", f"{project}_edge")):
        try:
            item = getattr(client, kind).get(name)
            item.remove(**({"force": True} if kind == "containers" else {}))
        except DockerException:
            pass  # not there (never made, or gone): leftovers() sweeps by label anyway
