"""Runtimes: where the stack runs. One small interface (base.Runtime), one sweep, and one
registry (RUNTIMES): a runtime is its entry here and its module; settings, the store
table and the CLI read the names from this table. This module imports nothing at load
time, so anything can read the table."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hscale.runtimes.base import Runtime
    from hscale.settings import Settings

# name -> "module:Class" of its Runtime, imported only when chosen.
RUNTIMES: dict[str, str] = {
    "local": "hscale.runtimes.local:LocalRuntime",  # processes under cgroup quotas
    "docker": "hscale.runtimes.docker:DockerRuntime",  # docker compose on one engine
    "swarm": "hscale.runtimes.swarm:SwarmRuntime",  # a docker stack on a swarm
}
AUTO = "auto"  # docker where an engine answers, else local


def resolve(name: str) -> str:
    """auto: docker where an engine answers, else local (the embedded default)."""
    if name != AUTO:
        return name
    from hscale.runtimes.docker import engine_answers

    return "docker" if engine_answers() else "local"


def create(settings: Settings, run_id: str, workdir: Path) -> Runtime:
    from hscale import stores
    from hscale.errors import UsageError

    name = resolve(settings.runtime)
    if settings.store not in stores.supported(name):
        raise UsageError(
            f"STORE={settings.store} is not available on the {name} runtime yet "
            f"(available: {', '.join(stores.supported(name))})"
        )
    module, _, cls = RUNTIMES[name].partition(":")
    runtime: Runtime = getattr(importlib.import_module(module), cls)(settings, run_id, workdir)
    return runtime
