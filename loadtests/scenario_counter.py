"""SCENARIO=counter: POST /counter, one atomic increment on the shared store per request."""

import hscale_listener  # registers hscale's event hooks
from locust import FastHttpUser, task


class CounterUser(FastHttpUser):
    wait_time = hscale_listener.pacing  # 0 in closed loop; LOAD=rate: paced to RATE

    @task
    def counter(self) -> None:
        self.client.post("/counter")
