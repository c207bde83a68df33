"""What the app tests share besides fixtures (importable: pytest puts tests/app on sys.path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from refapp import create_app
from werkzeug.test import TestResponse

REPLICA = "test-replica"
BACKENDS = ("redis", "memcached", "postgres", "memory")
SHARED_BACKENDS = ("redis", "memcached", "postgres")


def assert_error(r: TestResponse, status: int) -> dict:
    """The API's error shape: JSON {"error", "status"} with X-Replica, never HTML."""
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    body = r.get_json()
    assert body["status"] == status
    assert isinstance(body["error"], str) and 0 < len(body["error"]) <= 80
    assert set(body) == {"error", "status"}
    assert r.headers["X-Replica"] == REPLICA
    return body


@dataclass
class Backend:
    """One store backend on a clean, real server; make_app() builds replicas of the app."""

    name: str
    settings: dict[str, Any]
    apps: list[Flask] = field(default_factory=list)

    def make_app(self, **extra: Any) -> Flask:
        app = create_app(
            {"TESTING": True, "REPLICA": REPLICA, "STORE": self.name, **self.settings, **extra}
        )
        self.apps.append(app)
        return app

    def close(self) -> None:
        for app in self.apps:
            app.extensions["store"].close()
