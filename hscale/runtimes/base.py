"""The interface every runtime implements, so one sweep drives them all."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from hscale.cgroups import CpuCounters


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
        """X-Replica names of the replicas now running."""

    @abstractmethod
    def components(self) -> list[Component]: ...

    @abstractmethod
    def counters(self) -> dict[str, CpuCounters]:
        """Cumulative CPU counters per component name, read now."""

    @abstractmethod
    def info(self) -> RuntimeInfo: ...

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
