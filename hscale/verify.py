"""Before any load: every endpoint answers correctly through the proxy (the reference
app's, checked one by one; your app's, by a smoke run of its Locust file in the sweep),
and every replica is reachable through it, proved by nginx's X-Upstream header on each
response (not by reading config, and without the app's help)."""

from __future__ import annotations

import time
import uuid

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from hscale.runtimes.base import UPSTREAM_HEADER, served_by


class VerificationError(RuntimeError):
    pass


def _expect(resp: requests.Response, status: int, what: str) -> dict:
    if resp.status_code != status:
        raise VerificationError(
            f"{what}: expected HTTP {status}, got {resp.status_code}: {resp.text[:200]}"
        )
    if "X-Replica" not in resp.headers:
        raise VerificationError(f"{what}: response has no X-Replica header")
    try:
        return resp.json()
    except ValueError as exc:
        raise VerificationError(f"{what}: body is not JSON: {resp.text[:200]}") from exc


def check_endpoints(base: str, session: requests.Session, shared: bool = True) -> None:
    """Every endpoint answers correctly. With an unshared store (memory) two requests may
    reach two replicas with states of their own, so only the shapes are checked: that the
    state diverges is for the consistency check to measure, not a reason to stop."""
    get = lambda path: session.get(base + path, timeout=5)  # noqa: E731
    _expect(get("/healthz"), 200, "GET /healthz")
    _expect(get("/readyz"), 200, "GET /readyz")
    if _expect(get("/json"), 200, "GET /json") != {"message": "Hello, World!"}:
        raise VerificationError("GET /json: unexpected body")
    first = _expect(session.post(base + "/counter", timeout=5), 200, "POST /counter")["value"]
    second = _expect(session.post(base + "/counter", timeout=5), 200, "POST /counter")["value"]
    if not (isinstance(first, int) and isinstance(second, int)) or (shared and second <= first):
        raise VerificationError(f"POST /counter does not increment: {first} then {second}")
    key, value = f"verify-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    _expect(session.put(f"{base}/kv/{key}", json={"value": value}, timeout=5), 200, "PUT /kv")
    read = get(f"/kv/{key}")
    if shared and _expect(read, 200, "GET /kv")["value"] != value:
        raise VerificationError("GET /kv does not return what PUT /kv stored")
    if not shared and read.status_code not in (200, 404):
        _expect(read, 200, "GET /kv")
    _expect(get("/work?ms=1"), 200, "GET /work?ms=1")
    _expect(get("/work?ms=abc"), 400, "GET /work?ms=abc (bad input)")


def replica_of(resp: requests.Response, upstreams: dict[str, str]) -> str:
    """The replica that answered, by name; its address if no running replica has it."""
    address = served_by(resp.headers.get(UPSTREAM_HEADER)) or ""
    return upstreams.get(address, address)


def check_replicas(
    base: str,
    upstreams: dict[str, str],
    session: requests.Session,
    path: str = "/json",
    timeout: float = 15.0,
) -> dict[str, int]:
    """Send rounds of GET path until one round reaches every running replica and no other
    (old nginx workers may still route the previous set for a moment after a reload),
    each answering below 400."""
    expected = sorted(set(upstreams.values()))
    seen: dict[str, int] = {}
    failed = ""  # the last answer at or above 400: after a resize, nginx's old workers
    deadline = time.monotonic() + timeout  # may still send to a stopped replica (502)
    while time.monotonic() < deadline:
        seen, failed = {}, ""
        for _ in range(4 * len(expected)):
            resp = session.get(base + path, timeout=5, allow_redirects=False)
            if resp.status_code >= 400:
                failed = f"HTTP {resp.status_code}: {resp.text[:160]}"
                continue
            replica = replica_of(resp, upstreams)
            seen[replica] = seen.get(replica, 0) + 1
        if set(seen) == set(expected) and not failed:
            return seen
        time.sleep(0.2)
    if failed:
        raise VerificationError(f"GET {path} through nginx still answered {failed}")
    missing, extra = sorted(set(expected) - set(seen)), sorted(set(seen) - set(expected))
    raise VerificationError(
        f"the proxy does not reach exactly the running replicas: missing {missing}, "
        f"unexpected {extra} (last round {seen})"
    )


def verify(
    base: str,
    upstreams: dict[str, str],
    shared: bool = True,
    reference: bool = True,
    health_path: str = "/json",
) -> dict[str, int]:
    """The reference app's endpoints, then the split; for your app, the split on its
    HEALTH_PATH (its routes are checked by the smoke run of its Locust file)."""
    with requests.Session() as session:
        # A reloading nginx closes idle keep-alive connections: retry those, never answers.
        session.mount("http://", HTTPAdapter(max_retries=Retry(total=3, backoff_factor=0.1)))
        if reference:
            check_endpoints(base, session, shared)
            return check_replicas(base, upstreams, session)
        return check_replicas(base, upstreams, session, path=health_path)


def read_counters(base: str, upstreams: dict[str, str], timeout: float = 10.0) -> dict[str, int]:
    """GET /counter through the proxy until every replica has answered: its value, by
    replica. With a shared store they agree; with an unshared one each has its own."""
    expected = set(upstreams.values())
    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=Retry(total=3, backoff_factor=0.1)))
        while expected - set(seen) and time.monotonic() < deadline:
            resp = session.get(base + "/counter", timeout=5)
            replica = replica_of(resp, upstreams)
            if resp.status_code == 200 and replica in expected:
                seen[replica] = int(_expect(resp, 200, "GET /counter")["value"])
    if set(expected) - set(seen):
        raise VerificationError(
            f"GET /counter did not reach replicas {sorted(set(expected) - set(seen))} "
            f"within {timeout:g} s"
        )
    return dict(sorted(seen.items()))
