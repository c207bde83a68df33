"""The interface every runtime implements, so one sweep drives them all."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from hscale import target
from hscale.cgroups import CpuCounters
from hscale.settings import Settings

# nginx names the upstream that served each response in this header (nginx.conf.template),
# so the split is proved without the app's help, for any app.
UPSTREAM_HEADER = "X-Upstream"


def served_by(value: str | None) -> str | None:
    """The upstream that answered, from nginx's $upstream_addr: the last of the servers it
    tried ("a:1, b:2" after a retry, "a:1 : b:2" after an internal redirect)."""
    if not value:
        return None
    return value.replace(" : ", ", ").split(",")[-1].strip() or None


@dataclass(frozen=True)
class Component:
    """A part of the stack whose CPU we account for, and the budget it runs under."""

    name: str
    kind: str  # "replica", "proxy", "store", "loadgen"
    budget_cpus: float | None  # None: no limit of its own (shares the host)


@dataclass
class RuntimeInfo:
    """What the manifest records about how the stack ran."""

    name: str
    cpu_limits: str  # "cgroup-v1", "cgroup-v2" or "none"
    cpu_limits_reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class Runtime(ABC):
    """Start the stack, resize it to N replicas, expose its endpoint, count CPU, stop it."""

    name: str
    s: Settings
    # CPU_SPLIT: the CPUs the replicas run on (the sweep sets it before start); None: any
    replica_cpuset: tuple[int, ...] | None = None

    @cached_property
    def target(self) -> target.Target:
        """What runs as the replicas (the reference app, APP or IMAGE) and its Locust file."""
        return target.resolve(self.s)

    @abstractmethod
    def preflight(self) -> None:
        """Check binaries, ports and permissions before anything starts (raises UsageError)."""

    @abstractmethod
    def start(self, n: int) -> None: ...

    @abstractmethod
    def resize(self, n: int) -> None: ...

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Base URL of the proxy, the only entry point for load."""

    @abstractmethod
    def replicas(self) -> list[str]:
        """Names of the replicas now running."""

    @abstractmethod
    def upstreams(self) -> dict[str, str]:
        """Each running replica's address as nginx's $upstream_addr shows it ("ip:port"),
        mapped to its name in replicas(): how a response's X-Upstream names its replica."""

    def cpusets(self) -> dict[str, str]:
        """{component: the CPUs its processes may run on, as "0,1"}, read back from the
        kernel or the engine: the proof of CPU_SPLIT. Empty where it cannot be read."""
        return {}

    def node_of(self) -> dict[str, str]:
        """{component: the machine it runs on}, where the stack spans machines (swarm);
        empty on one machine."""
        return {}

    @abstractmethod
    def components(self) -> list[Component]: ...

    @abstractmethod
    def counters(self) -> dict[str, CpuCounters]:
        """Cumulative CPU counters per component name, read now."""

    @abstractmethod
    def info(self) -> RuntimeInfo: ...

    def casualties(self) -> list[str]:
        """Parts of the stack that should be running and are not ("store exited"): a
        trial they died in is kept but not valid, and the sweep stops."""
        return []

    def inject(self, fault: str, seconds: float) -> dict[str, Any]:
        """Strike one fault now (settings.FAULTS: kill-replica, pause-replica for `seconds`,
        restart-store) and return what was done; the last replica is the victim."""
        from hscale.errors import UsageError

        raise UsageError(f"faults are not available on the {self.name} runtime")

    def heal(self) -> None:  # noqa: B027  (optional: a runtime without faults has nothing to heal)
        """After a fault: every replica running again and behind nginx."""

    def loadgen_launcher(self):
        """A launcher that runs Locust elsewhere (see hscale.loadgen), or None: this host."""
        return None

    @abstractmethod
    def stop(self) -> None:
        """Stop everything; safe to call twice and after a failed start."""

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
