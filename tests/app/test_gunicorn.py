"""The app under real gunicorn, started the way hscale starts a replica."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "app"
GRACEFUL_TIMEOUT_S = 10  # graceful_timeout in app/gunicorn.conf.py


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], dict]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def wait_healthy(base: str, proc: subprocess.Popen, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if fetch(base + "/healthz")[0] == 200:
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"gunicorn never became healthy:\n{log.read_text()}")


@pytest.mark.parametrize(
    ("cwd", "extra_args"),
    [(APP_DIR, []), (ROOT, ["--chdir", "app"])],
    ids=["cwd=app", "chdir-app"],
)
def test_gunicorn_serves_and_stops_gracefully(
    redis_server, unused_port: int, tmp_path: Path, cwd: Path, extra_args: list[str]
) -> None:
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{unused_port}",
        "GUNICORN_WORKERS": "2",
        "APP_REPLICA": "g1",
        "APP_REDIS_URL": redis_server.url,
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(APP_DIR / "gunicorn.conf.py"),
                *extra_args,
            ],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{unused_port}"
    try:
        wait_healthy(base, proc, log)

        status, headers, body = fetch(base + "/counter", "POST")
        assert status == 200 and isinstance(body["value"], int)
        assert headers["X-Replica"] == "g1"
        status2, _, body2 = fetch(base + "/counter", "POST")
        assert status2 == 200 and body2["value"] > body["value"]

        status, headers, body = fetch(base + "/json")
        assert (status, body, headers["X-Replica"]) == (200, {"message": "Hello, World!"}, "g1")
        assert headers["Content-Type"] == "application/json"

        status, headers, body = fetch(base + "/nope")
        assert (status, body["status"], headers["X-Replica"]) == (404, 404, "g1")
        assert fetch(base + "/readyz")[0] == 200
    finally:
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=GRACEFUL_TIMEOUT_S + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"gunicorn ignored SIGTERM:\n{log.read_text()}")
    assert time.monotonic() - start < GRACEFUL_TIMEOUT_S
    assert rc == 0, log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("store", ["memcached", "postgres"])
def test_gunicorn_workers_share_the_store(
    request: pytest.FixtureRequest, store: str, unused_port: int, tmp_path: Path
) -> None:
    # Two forked workers, each with its own lazily made pool, on one shared store.
    if store == "memcached":
        settings = {"APP_MEMCACHED_SERVER": request.getfixturevalue("memcached_server").server}
    else:
        server = request.getfixturevalue("postgres_server")
        settings = {"APP_POSTGRES_DSN": server.create_database(f"gunicorn_{unused_port}")}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("APP_")},
        **settings,
        "GUNICORN_BIND": f"127.0.0.1:{unused_port}",
        "GUNICORN_WORKERS": "2",
        "APP_REPLICA": "g1",
        "APP_STORE": store,
    }
    init = subprocess.run(
        [sys.executable, "-m", "refapp.init_store"], cwd=APP_DIR, env=env, capture_output=True
    )
    assert init.returncode == 0, init.stderr
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(APP_DIR / "gunicorn.conf.py")],
            cwd=APP_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{unused_port}"
    try:
        wait_healthy(base, proc, log)
        assert fetch(base + "/readyz")[0] == 200
        before = fetch(base + "/counter")[2]["value"]
        values = [fetch(base + "/counter", "POST")[2]["value"] for _ in range(20)]
        assert values == list(range(before + 1, before + 21))
        assert fetch(base + "/counter")[2] == {"value": before + 20}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=GRACEFUL_TIMEOUT_S + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"gunicorn ignored SIGTERM:\n{log.read_text()}")
    assert rc == 0, log.read_text()
    assert "Traceback" not in log.read_text()
