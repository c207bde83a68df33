"""Running docker compose (the v2 plugin where present, else docker-compose v1) for one
project, with the environment that fills docker-compose.yml's variables, and the
override files hscale generates for your app (APP, IMAGE) and your Locust file."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from hscale import paths, stores
from hscale.errors import UsageError

COMPOSE_FILE = paths.ROOT / "docker-compose.yml"


@cache
def command() -> tuple[str, ...]:
    if shutil.which("docker"):
        done = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if done.returncode == 0:
            return ("docker", "compose")
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    raise UsageError(
        "neither `docker compose` nor `docker-compose` is installed; install one "
        "(e.g. apt-get install docker-compose) or use RUNTIME=local"
    )


class Compose:
    def __init__(
        self,
        project: str,
        env: dict[str, str],
        profiles: tuple[str, ...] = (),
        overrides: tuple[Path, ...] = (),
    ) -> None:
        self.project, self.env, self.profiles = project, env, profiles
        self.overrides = overrides  # merged over docker-compose.yml, in this order

    def argv(self, *args: str) -> list[str]:
        # v1 applies deploy.resources (the limits swarm also reads) only in compatibility
        # mode; v2 always does.
        compat = ["--compatibility"] if command() == ("docker-compose",) else []
        profiles = [arg for p in self.profiles for arg in ("--profile", p)]
        files = [arg for f in (COMPOSE_FILE, *self.overrides) for arg in ("-f", str(f))]
        return [*command(), *compat, "-p", self.project, *files, *profiles, *args]

    def run(
        self,
        *args: str,
        check: bool = True,
        on_line: Callable[[str], None] | None = None,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess:
        """Run a compose command; stream its output lines to on_line when given."""
        proc = subprocess.Popen(
            self.argv(*args),
            env=self.env,
            cwd=paths.ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        lines: list[str] = []
        assert proc.stdout is not None
        # Reading blocks until compose closes its output: a timer kills a hung call.
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            for line in proc.stdout:
                lines.append(line)
                if on_line:
                    on_line(line.rstrip())
            code = proc.wait()
        finally:
            timer.cancel()
        out = "".join(lines)
        what = " ".join(args)
        if timed_out.is_set():
            raise ComposeError(
                f"compose {what} did not finish within {timeout:g} s:\n{out[-2000:]}"
            )
        if check and code != 0:
            raise ComposeError(f"compose {what} failed with code {code}:\n{out[-2000:]}")
        return subprocess.CompletedProcess(proc.args, code, out, "")


class ComposeError(RuntimeError):
    pass


def write_override(path: Path, services: dict[str, Any]) -> Path:
    """A compose file of `services` patches, merged over docker-compose.yml by compose's
    own rules (mappings by key, volumes by target path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"services": services}, sort_keys=False))
    return path


def app_service() -> dict[str, Any]:
    """docker-compose.yml's app service as written (variables not filled in)."""
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    service: dict[str, Any] = doc["services"]["app"]
    return service


def app_environment(env: dict[str, str], store: str, user: bool) -> dict[str, str]:
    """The app service's environment with `env` filled in, as a replica gets it (your
    app: with user_app_patch's variables): for a one-off container outside compose."""
    raw = {**app_service()["environment"]}
    if user:
        raw.update(user_app_patch(store).get("environment", {}))
    return {name: _fill(str(value), env) for name, value in raw.items()}


def _fill(value: str, env: dict[str, str]) -> str:
    """${VAR}, ${VAR:?} and ${VAR:-default} as compose fills them."""

    def one(m: re.Match[str]) -> str:
        name, op, default = m.group(1), m.group(2) or "", m.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(f"{name} is not set")
        return default

    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, value)


def user_app_patch(store: str) -> dict[str, Any]:
    """What your app's replicas get instead of the reference app's service settings:
    no healthcheck (your image may have neither bash nor /readyz; hscale waits for
    HEALTH_PATH through nginx instead), and the store's conventional variables
    (REDIS_URL, ...) beside the APP_* ones, as `${...}` references: no password in it."""
    env = app_service()["environment"]
    conventional = {conv: env[var] for conv, var in stores.STORES[store].user_env if var in env}
    # test NONE, not disable: compose v1 merges the mapping, and refuses disable beside the
    # reference app's interval and retries.
    patch: dict[str, Any] = {"healthcheck": {"test": ["NONE"]}}
    if conventional:
        patch["environment"] = conventional
    return patch
