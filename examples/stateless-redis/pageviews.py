"""Page views counted in Redis, and a JSON endpoint that does a little CPU work.

Stateless: a replica keeps nothing between requests (all shared state is in Redis, named
by REDIS_URL), so any replica can serve any request and adding replicas adds capacity.
"""

import math
import os

import redis
from flask import Flask, abort, jsonify
from redis.backoff import NoBackoff
from redis.retry import Retry

PAGES = ("home", "pricing", "docs", "blog", "about", "careers", "contact", "changelog")

app = Flask(__name__)

# One client per process; redis-py opens its connections lazily and a forked worker
# gets a fresh pool. Every setting explicit: a Redis outage is a fast 503, not a hang.
store = redis.Redis.from_url(
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    max_connections=32,
    socket_timeout=1.0,
    socket_connect_timeout=1.0,
    health_check_interval=30,
    retry=Retry(NoBackoff(), 0),
    decode_responses=True,
)


@app.errorhandler(redis.RedisError)
def store_unavailable(_exc: redis.RedisError):
    return jsonify(error="store unavailable"), 503


@app.get("/")
def index():
    return jsonify(pages=[f"/pages/{p}" for p in PAGES], trending="/api/trending")


@app.get("/pages/<slug>")
def page(slug: str):
    """Serve a page and count the view: one atomic INCR, shared by every replica."""
    if slug not in PAGES:
        abort(404)
    views = store.incr(f"views:{slug}")
    return jsonify(page=slug, views=views)


@app.get("/api/trending")
def trending():
    """The pages ranked by a decayed score of their views: one MGET, then some Python."""
    counts = store.mget([f"views:{p}" for p in PAGES])
    ranked = sorted(
        ((score(int(c or 0), i), p) for i, (p, c) in enumerate(zip(PAGES, counts, strict=True))),
        reverse=True,
    )
    return jsonify(trending=[{"page": p, "score": round(s, 3)} for s, p in ranked])


def score(views: int, age: int) -> float:
    """A few hundred float operations: the per-request CPU of a typical view."""
    total = 0.0
    for hour in range(1, 200):
        total += math.log1p(views) * math.exp(-(age + hour) / 48) / math.sqrt(hour)
    return total
