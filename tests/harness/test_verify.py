"""The split check through a real HTTP server that answers as nginx does after a resize:
a few 502s from old workers are waited out; a route that keeps failing is named."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from hscale.verify import VerificationError, check_replicas

UPSTREAMS = {"127.0.0.1:8101": "replica-1", "127.0.0.1:8102": "replica-2"}


class Nginxish(BaseHTTPRequestHandler):
    failures_left = 0  # answers 502 this many times first
    count = 0

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        cls = type(self)
        cls.count += 1
        status = 502 if cls.failures_left > 0 else 200
        cls.failures_left -= 1
        self.send_response(status)
        self.send_header("X-Upstream", list(UPSTREAMS)[cls.count % 2])
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Nginxish)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_a_few_502s_after_a_resize_are_waited_out(server: str) -> None:
    Nginxish.failures_left = 3
    with requests.Session() as s:
        seen = check_replicas(server, UPSTREAMS, s, path="/", timeout=5)
    assert set(seen) == {"replica-1", "replica-2"}


def test_a_route_that_keeps_failing_is_named(server: str) -> None:
    Nginxish.failures_left = 10**9
    with requests.Session() as s, pytest.raises(VerificationError, match="still answered HTTP 502"):
        check_replicas(server, UPSTREAMS, s, path="/", timeout=1)
