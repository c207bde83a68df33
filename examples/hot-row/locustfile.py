"""Shoppers in a flash sale: every one buys the product on sale, one unit at a time."""

from locust import FastHttpUser, task


class Shopper(FastHttpUser):
    @task
    def checkout(self) -> None:
        self.client.post("/checkout", json={"product": 1, "qty": 1})
