"""SCENARIO=work: GET /work?ms=10, a fixed 10 ms of CPU per request and no shared store."""

import hscale_listener  # registers hscale's event hooks
from locust import FastHttpUser, task

WORK_MS = 10


class WorkUser(FastHttpUser):
    wait_time = hscale_listener.pacing  # 0 in closed loop; LOAD=rate: paced to RATE

    @task
    def work(self) -> None:
        self.client.get(f"/work?ms={WORK_MS}", name="/work")
