"""SCENARIO=counter: POST /counter, one atomic increment on the shared store per request."""

import hscale_listener  # noqa: F401  (registers hscale's event hooks)
from locust import FastHttpUser, task


class CounterUser(FastHttpUser):
    @task
    def counter(self) -> None:
        self.client.post("/counter")
