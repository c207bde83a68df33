"""SCENARIO=mixed (default): a blend of typical web work across every endpoint."""

import random
import uuid

import hscale_listener  # registers hscale's event hooks
from locust import FastHttpUser, task

KEYS = 1000


class MixedUser(FastHttpUser):
    wait_time = hscale_listener.pacing  # 0 in closed loop; LOAD=rate: paced to RATE

    def on_start(self) -> None:
        self.key = f"user{random.randrange(KEYS)}"
        self.client.put(f"/kv/{self.key}", json={"value": "profile"}, name="/kv/[key] PUT")
        self.session = {"X-User": uuid.uuid4().hex}
        self.visits = 0
        self.save_session()

    @task(5)
    def json(self) -> None:
        self.client.get("/json")

    @task(3)
    def read(self) -> None:
        self.client.get(f"/kv/{self.key}", name="/kv/[key] GET")

    @task(1)
    def write(self) -> None:
        self.client.put(f"/kv/{self.key}", json={"value": "profile"}, name="/kv/[key] PUT")

    @task(1)
    def counter(self) -> None:
        self.client.post("/counter")

    @task(1)
    def save_session(self) -> None:
        self.visits += 1
        self.client.post(
            "/session", json={"data": {"visits": self.visits}}, headers=self.session,
            name="/session POST",
        )  # fmt: skip

    @task(2)
    def load_session(self) -> None:
        with self.client.get(
            "/session", headers=self.session, name="/session GET", catch_response=True
        ) as resp:
            hscale_listener.check_read(resp)

    @task(1)
    def work(self) -> None:
        self.client.get("/work?ms=2", name="/work")
