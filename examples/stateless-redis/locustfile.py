"""Visitors reading pages (each view counted in Redis) and the trending list."""

import random

from locust import FastHttpUser, task

PAGES = ("home", "pricing", "docs", "blog", "about", "careers", "contact", "changelog")


class Visitor(FastHttpUser):
    @task(4)
    def view_page(self) -> None:
        self.client.get(f"/pages/{random.choice(PAGES)}", name="/pages/[slug]")

    @task(1)
    def trending(self) -> None:
        self.client.get("/api/trending")
