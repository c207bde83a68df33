"""Running docker compose (the v2 plugin where present, else docker-compose v1) for one
project, with the environment that fills docker-compose.yml's variables."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from functools import cache

from hscale import paths
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
    def __init__(self, project: str, env: dict[str, str], profiles: tuple[str, ...] = ()) -> None:
        self.project, self.env, self.profiles = project, env, profiles

    def argv(self, *args: str) -> list[str]:
        # v1 applies deploy.resources (the limits swarm also reads) only in compatibility
        # mode; v2 always does.
        compat = ["--compatibility"] if command() == ("docker-compose",) else []
        profiles = [arg for p in self.profiles for arg in ("--profile", p)]
        return [*command(), *compat, "-p", self.project, "-f", str(COMPOSE_FILE), *profiles, *args]

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
