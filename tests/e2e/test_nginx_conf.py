"""The one nginx configuration (nginx/nginx.conf.template), run for real: nginx's own
errors come in the app's JSON shape, bodies up to the app's 32 KiB pass, and every
response names the upstream that answered."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hscale_testkit import free_port_block

from hscale import paths
from hscale.procs import ManagedProcess, child_env, wait_http
from hscale.runtimes.binaries import find_binary

pytestmark = pytest.mark.e2e


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[str]:
    port, dead = free_port_block(), free_port_block()  # nothing listens on `dead`
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        paths.render_nginx(
            {
                "DAEMON": "off", "TMP": str(tmp_path), "ERROR_LOG": str(tmp_path / "error.log"),
                "ACCESS_LOG": "off", "USER_DIRECTIVE": "user root;" if os.geteuid() == 0 else "",
                "LISTEN": f"127.0.0.1:{port}",
                "UPSTREAM_SERVERS": f"server 127.0.0.1:{dead};",
            }
        )
    )  # fmt: skip
    argv = [find_binary("nginx"), "-c", str(conf), "-p", str(tmp_path)]
    proc = ManagedProcess("nginx", argv, tmp_path / "nginx.log", child_env("test-nginx"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/nginx-health", proc)
        yield url
    finally:
        proc.stop()


def test_no_replica_is_a_json_502_naming_the_upstream(nginx: str) -> None:
    r = requests.get(f"{nginx}/anything", timeout=10)
    assert r.status_code == 502 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {"error": "nginx: bad gateway: no replica answered", "status": 502}
    assert r.headers["X-Upstream"].startswith("127.0.0.1:")


def test_a_body_over_the_apps_limit_is_a_json_413(nginx: str) -> None:
    r = requests.post(f"{nginx}/kv/x", data=b"x" * (33 * 1024), timeout=10)
    assert r.status_code == 413 and r.json()["status"] == 413


def test_a_body_at_the_apps_limit_reaches_the_upstream(nginx: str) -> None:
    r = requests.post(f"{nginx}/kv/x", data=b"x" * (32 * 1024), timeout=10)
    assert r.status_code == 502  # passed nginx's limit; only the missing replica failed it


def test_a_malformed_request_is_a_json_400(nginx: str) -> None:
    host, port = nginx.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")  # two Host headers
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 400") and '"status": 400' in reply
