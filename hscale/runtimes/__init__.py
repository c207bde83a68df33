"""Runtimes: where the stack runs. One small interface (base.Runtime), one sweep."""

from pathlib import Path

from hscale import stores
from hscale.errors import UsageError
from hscale.runtimes.base import Runtime
from hscale.settings import Settings


def resolve(name: str) -> str:
    """auto: docker where an engine answers, else local (the embedded default)."""
    if name != "auto":
        return name
    from hscale.runtimes.docker import engine_answers

    return "docker" if engine_answers() else "local"


def create(settings: Settings, run_id: str, workdir: Path) -> Runtime:
    name = resolve(settings.runtime)
    if settings.store not in stores.supported(name):
        raise UsageError(
            f"STORE={settings.store} is not available on the {name} runtime yet "
            f"(available: {', '.join(stores.supported(name))})"
        )
    if name == "swarm":
        from hscale.runtimes.swarm import SwarmRuntime

        return SwarmRuntime(settings, run_id, workdir)
    if name == "docker":
        from hscale.runtimes.docker import DockerRuntime

        return DockerRuntime(settings, run_id, workdir)
    from hscale.runtimes.local import LocalRuntime

    return LocalRuntime(settings, run_id, workdir)
