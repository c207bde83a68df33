"""SCENARIO=kv: reads and writes of small values in the shared store, 3 reads per write.

Each user reads only keys it has written, so a 404 is a real error (a lost write),
possibly written through one replica and read through another.
"""

import random

import hscale_listener  # registers hscale's event hooks
from locust import FastHttpUser, task

KEYS = 1000
VALUE = "x" * 256


class KvUser(FastHttpUser):
    wait_time = hscale_listener.pacing  # 0 in closed loop; LOAD=rate: paced to RATE

    def on_start(self) -> None:
        self.written: list[str] = []
        self.put()

    @task(1)
    def put(self) -> None:
        key = f"k{random.randrange(KEYS)}"
        self.client.put(f"/kv/{key}", json={"value": VALUE}, name="/kv/[key] PUT")
        self.written.append(key)

    @task(3)
    def get(self) -> None:
        self.client.get(f"/kv/{random.choice(self.written)}", name="/kv/[key] GET")
