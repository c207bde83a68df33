"""Running docker compose (the v2 plugin where present, else docker-compose v1) for one
project, with the environment that fills docker-compose.yml's variables; for your app
(APP, IMAGE) a file derived from it, and an override for your Locust file."""

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
        base: Path = COMPOSE_FILE,
    ) -> None:
        self.project, self.env, self.profiles = project, env, profiles
        self.base = base  # docker-compose.yml, or the file for_your_app() derives from it
        self.overrides = overrides  # merged over base, in this order

    def argv(self, *args: str) -> list[str]:
        # v1 applies deploy.resources (the limits swarm also reads) only in compatibility
        # mode; v2 always does.
        compat = ["--compatibility"] if command() == ("docker-compose",) else []
        profiles = [arg for p in self.profiles for arg in ("--profile", p)]
        files = [arg for f in (self.base, *self.overrides) for arg in ("-f", str(f))]
        # Build contexts (./app, ...) are relative to the checkout, wherever base is.
        where = ["--project-directory", str(paths.ROOT)]
        return [*command(), *compat, "-p", self.project, *files, *where, *profiles, *args]

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


def compose_services() -> list[str]:
    """The services of docker-compose.yml (your app's file keeps the same names)."""
    return list(yaml.safe_load(COMPOSE_FILE.read_text())["services"])


def write_override(path: Path, services: dict[str, Any]) -> Path:
    """A compose file of `services` patches, merged over the stack's file by compose's own
    rules (mappings by key, volumes by target path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"services": services}, sort_keys=False))
    return path


def for_your_app(store: str) -> dict[str, Any]:
    """docker-compose.yml as your app (APP, IMAGE) runs under it: the app service without
    the reference app's healthcheck (your image may have neither bash nor /readyz; hscale
    waits for HEALTH_PATH through nginx instead), nginx starting once the replicas have
    started, and the store's conventional variables (REDIS_URL, ...) beside the APP_* ones,
    as `${...}` references: no password in it. A whole file, not an override: compose v1
    merges a healthcheck mapping key by key and then refuses `disable` beside `interval`."""
    doc: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())  # anchors merged
    doc = {k: v for k, v in doc.items() if not k.startswith("x-")}
    app = doc["services"]["app"]
    app.pop("build")  # never ./app: APP_IMAGE is built from your project, or is yours
    app["healthcheck"] = {"disable": True}
    app["environment"].update(_conventional(app["environment"], store))
    doc["services"]["nginx"]["depends_on"] = {"app": {"condition": "service_started"}}
    return doc


def write_for_your_app(path: Path, store: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated by hscale from docker-compose.yml for your app (compose.for_your_app)\n"
    path.write_text(header + yaml.safe_dump(for_your_app(store), sort_keys=False))
    return path


def _conventional(env: dict[str, str], store: str) -> dict[str, str]:
    return {conv: env[var] for conv, var in stores.STORES[store].user_env if var in env}


def app_environment(env: dict[str, str], store: str, user: bool) -> dict[str, str]:
    """The app service's environment with `env` filled in, as a replica gets it: for a
    one-off container outside compose."""
    doc = for_your_app(store) if user else yaml.safe_load(COMPOSE_FILE.read_text())
    raw = doc["services"]["app"]["environment"]
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
