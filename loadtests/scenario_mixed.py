"""SCENARIO=mixed (default): a blend of typical web work across every endpoint."""

import random

import hscale_listener  # registers hscale's event hooks
from locust import FastHttpUser, task

KEYS = 1000


class MixedUser(FastHttpUser):
    wait_time = hscale_listener.pacing  # 0 in closed loop; LOAD=rate: paced to RATE

    def on_start(self) -> None:
        self.key = f"user{random.randrange(KEYS)}"
        self.client.put(f"/kv/{self.key}", json={"value": "profile"}, name="/kv/[key] PUT")

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
    def work(self) -> None:
        self.client.get("/work?ms=2", name="/work")
