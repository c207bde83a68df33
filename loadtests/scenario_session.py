"""SCENARIO=session: per-user sessions (X-User, no cookies), 3 reads per write.

Each write bumps a field, so a read that is not the user's last acknowledged write (a
404, a lower version or other data), e.g. a session kept by one replica only, is a
failure and counts in the tally's consistency.
"""

import uuid

import hscale_listener  # registers hscale's event hooks
from locust import FastHttpUser, task

CART = [{"sku": f"item-{i}", "qty": 1} for i in range(4)]  # ~150 bytes of session data


class SessionUser(FastHttpUser):
    wait_time = hscale_listener.pacing  # 0 in closed loop; LOAD=rate: paced to RATE

    def on_start(self) -> None:
        self.headers = {"X-User": uuid.uuid4().hex}  # unique across Locust workers
        self.visits = 0
        self.write()

    @task(1)
    def write(self) -> None:
        self.visits += 1
        data = {"visits": self.visits, "cart": CART}
        self.client.post(
            "/session", json={"data": data}, headers=self.headers, name="/session POST"
        )

    @task(3)
    def read(self) -> None:
        with self.client.get(
            "/session", headers=self.headers, name="/session GET", catch_response=True
        ) as resp:
            hscale_listener.check_read(resp)
