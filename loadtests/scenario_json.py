"""SCENARIO=json: GET /json, serialisation only, no shared store (the share-nothing baseline)."""

import hscale_listener  # registers hscale's event hooks
from locust import FastHttpUser, task


class JsonUser(FastHttpUser):
    wait_time = hscale_listener.pacing  # 0 in closed loop; LOAD=rate: paced to RATE

    @task
    def json(self) -> None:
        self.client.get("/json")
