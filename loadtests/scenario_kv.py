"""SCENARIO=kv: reads and writes of ~256-byte values in the shared store, 3 reads per write.

Each user writes only its own keys, a new value every time, and reads back only keys it
has written: a 404 (a lost write) or an older value (a stale one), e.g. written through
one replica and read through another, is a failure and counts in the tally's consistency.
"""

import random
import uuid

import hscale_listener  # registers hscale's event hooks
from locust import FastHttpUser, task

KEYS = 10  # per user; nobody else writes them, so any other value is stale


class KvUser(FastHttpUser):
    wait_time = hscale_listener.pacing  # 0 in closed loop; LOAD=rate: paced to RATE

    def on_start(self) -> None:
        self.prefix, self.writes = uuid.uuid4().hex, 0  # unique across Locust workers
        self.written: list[str] = []
        self.put()

    @task(1)
    def put(self) -> None:
        key = f"{self.prefix}-{random.randrange(KEYS)}"
        self.writes += 1
        value = f"{self.writes}:".ljust(256, "x")  # unique per write: staleness shows
        self.client.put(f"/kv/{key}", json={"value": value}, name="/kv/[key] PUT")
        if key not in self.written:
            self.written.append(key)

    @task(3)
    def get(self) -> None:
        key = random.choice(self.written)
        with self.client.get(f"/kv/{key}", name="/kv/[key] GET", catch_response=True) as resp:
            hscale_listener.check_read(resp)
