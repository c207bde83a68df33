"""SCENARIO=work: GET /work?ms=10, a fixed 10 ms of CPU per request and no shared store."""

import hscale_listener  # noqa: F401  (registers hscale's event hooks)
from locust import FastHttpUser, task

WORK_MS = 10


class WorkUser(FastHttpUser):
    @task
    def work(self) -> None:
        self.client.get(f"/work?ms={WORK_MS}", name="/work")
