"""The same flash sale against the fixed checkout, which holds the row lock for one
statement only: LOCUSTFILE=examples/hot-row/locustfile_fixed.py."""

from locust import FastHttpUser, task


class Shopper(FastHttpUser):
    @task
    def checkout(self) -> None:
        self.client.post("/checkout-fixed", json={"product": 1, "qty": 1})
