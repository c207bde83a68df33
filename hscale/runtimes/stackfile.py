"""docker-compose.yml as `docker stack deploy` accepts it.

Swarm's loader takes an older schema than compose: no `build`, `depends_on` only as a
list, no `pids_limit` or `security_opt` at service level, no host IP on published ports (the
forwarder, hscale/runtimes/forwarder.py, publishes nginx instead).
This pure function derives the stack file from the one compose file, so there is still
a single description of the stack. Variables (`${...}`) are kept for `docker stack
deploy` to fill from the environment: the passwords never land in the file.

Swarm has no profiles: the stack carries the store STORE selects (none for memory) and no
other, and starts with no app replica, so that hscale can create the store's schema
before the first replica exists (the backend network is attachable for that one-off
container). For your app (APP, IMAGE) it is derived from compose.for_your_app's file.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from hscale import stores

# What swarm cannot honour, said once per run in the output and the manifest.
DROPPED_NOTES = {
    "security_opt": "no-new-privileges is not settable on swarm services",
    "pids_limit": "swarm services take no pids limit",
}


# docker-compose.yml's store services (hscale/stores.py); redis is the one without a profile.
STORE_SERVICES = stores.services()


def stack_file(compose_text: str, store: str = "redis") -> tuple[str, list[str]]:
    """(stack YAML for STORE=store, notes on what swarm could not keep)."""
    doc: dict[str, Any] = yaml.safe_load(compose_text)
    notes: set[str] = set()
    doc = {k: v for k, v in doc.items() if not k.startswith("x-")}  # anchors already merged
    doc["version"] = "3.8"
    # Of the stores, only STORE's. Other profiled services (the containerised load
    # generator) are started by hscale on demand under compose; swarm's load comes from
    # this host.
    services = {}
    for name, service in doc["services"].items():
        if name in STORE_SERVICES:
            if name == store:
                service.pop("profiles", None)
                services[name] = service
        elif "profiles" not in service:
            services[name] = service
    doc["services"] = services
    doc["services"]["app"].setdefault("deploy", {})["replicas"] = 0  # hscale scales it
    doc["networks"]["backend"]["attachable"] = True  # the one-off init containers
    doc["networks"]["frontend"] = {**(doc["networks"]["frontend"] or {}), "attachable": True}
    for service in doc["services"].values():
        service.pop("build", None)
        # DNS round-robin instead of an IPVS virtual IP: nginx resolves every task anyway
        # (tasks.app), and kernels without IPVS (this project's CI VM) still work.
        service.setdefault("deploy", {})["endpoint_mode"] = "dnsrr"
        if isinstance(service.get("depends_on"), dict):
            service["depends_on"] = sorted(service["depends_on"])
        if service.pop("pids_limit", None) is not None:
            notes.add(DROPPED_NOTES["pids_limit"])
        if service.pop("security_opt", None):
            notes.add(DROPPED_NOTES["security_opt"])
        # Nothing published: swarm would bind every interface (its port config has no
        # host IP). hscale's forwarder publishes nginx on PUBLISH_ADDRESS instead.
        for port in service.pop("ports", []):
            if not re.fullmatch(r"(\$\{[^}]+\}|[\d.]+):(\$\{[^}]+\}|\d+):8080", str(port)):
                raise ValueError(f"cannot translate port {port!r} for swarm")
    return yaml.safe_dump(doc, sort_keys=False), sorted(notes)


def place(text: str, key: str, pinned: dict[str, str], avoid: str | None = None) -> str:
    """The stack with services pinned to nodes by their `key` label ({service: node}),
    and the app's replicas spread over the nodes by it, kept off `avoid` (the load
    generator's node). Without pins or `avoid`, the stack as it was (a single node)."""
    if not pinned and avoid is None:
        return text
    doc = yaml.safe_load(text)
    for service, node in pinned.items():
        placement = doc["services"][service]["deploy"].setdefault("placement", {})
        placement["constraints"] = [f"node.labels.{key} == {node}"]
    app = doc["services"]["app"]["deploy"].setdefault("placement", {})
    app["preferences"] = [{"spread": f"node.labels.{key}"}]
    if avoid is not None:
        app["constraints"] = [f"node.labels.{key} != {avoid}"]
    return yaml.safe_dump(doc, sort_keys=False)
