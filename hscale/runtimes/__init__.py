"""Runtimes: where the stack runs. One small interface (base.Runtime), one sweep."""

from hscale.runtimes.base import Runtime
from hscale.settings import Settings


def create(settings: Settings, run_id: str, workdir) -> Runtime:
    """The runtime the settings ask for (auto: local until a container runtime exists)."""
    from hscale.runtimes.local import LocalRuntime

    return LocalRuntime(settings, run_id, workdir)
