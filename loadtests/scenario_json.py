"""SCENARIO=json: GET /json, serialisation only, no shared store (the share-nothing baseline)."""

import hscale_listener  # noqa: F401  (registers hscale's event hooks)
from locust import FastHttpUser, task


class JsonUser(FastHttpUser):
    @task
    def json(self) -> None:
        self.client.get("/json")
