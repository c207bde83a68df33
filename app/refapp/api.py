"""The benchmark endpoints: /json, /counter, /kv/<key>, /session and /work."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, current_app, request

from .cpu import burn_cpu
from .store import get_store
from .stores.base import dump_session

bp = Blueprint("api", __name__)

_KEY_CHARS = re.compile(r"[A-Za-z0-9_.:-]+")
# A bounded digit string: no sign, spaces or "1_000" (all of which int() accepts).
_MS = re.compile(r"[0-9]{1,9}")
# Deeper session data is refused: every parser on the way (ours, jsonb) has a stack.
_SESSION_MAX_DEPTH = 32


@bp.get("/json")
def hello() -> dict[str, Any]:
    # Serialisation only, no store: the share-nothing baseline.
    return {"message": "Hello, World!"}


@bp.post("/counter")
def counter() -> dict[str, Any]:
    # The body is optional, but a JSON body that does not parse is still a client error.
    if request.is_json and request.get_data(cache=True):
        request.get_json()
    return {"value": get_store().incr_counter()}


@bp.get("/counter")
def counter_value() -> dict[str, Any]:
    # A read that does not count: how a checker compares acknowledged increments with
    # what the store holds.
    return {"value": get_store().get_counter()}


@bp.get("/kv/", defaults={"key": ""})
@bp.get("/kv/<path:key>")  # path: "a/b" reaches the key check (400) instead of a 404
def kv_get(key: str) -> dict[str, Any]:
    _check_key(key)
    value = get_store().get(key)
    if value is None:
        abort(404, "no such key")
    return {"key": key, "value": value}


@bp.put("/kv/", defaults={"key": ""})
@bp.put("/kv/<path:key>")
def kv_put(key: str) -> dict[str, Any]:
    _check_key(key)
    value = _value_from(request.get_json())
    get_store().set(key, value)
    return {"key": key, "value": value}


# The user comes from a header, not a cookie or the connection: any replica can serve
# any user, because the state lives in the store (no sticky sessions needed).
@bp.get("/session")
def session_get() -> dict[str, Any]:
    user = _user()
    found = get_store().get_session(user)
    if found is None:
        abort(404, "no session for this user")
    return {"user": user, "data": found["data"], "version": found["version"]}


@bp.post("/session")
def session_put() -> dict[str, Any]:
    user = _user()
    data = _session_data_from(request.get_json())
    return {"user": user, "version": get_store().put_session(user, data)}


@bp.get("/work")
def work() -> dict[str, Any]:
    limit: int = current_app.config["WORK_MAX_MS"]
    raw = request.args.get("ms")
    if raw is None:
        abort(400, "ms is required")
    if not _MS.fullmatch(raw) or int(raw) > limit:
        abort(400, f"ms must be an integer from 0 to {limit}")
    ms = int(raw)
    return {"ms": ms, "iterations": burn_cpu(ms)}


def _check_key(key: str, what: str = "key") -> None:
    limit: int = current_app.config["KV_MAX_KEY_LEN"]
    if not 1 <= len(key) <= limit:
        abort(400, f"{what} must be 1 to {limit} characters")
    if not _KEY_CHARS.fullmatch(key):
        abort(400, f"{what} may contain only A-Z a-z 0-9 _ . : -")


def _user() -> str:
    user = request.headers.get("X-User")
    if user is None:
        abort(400, "X-User header is required")
    _check_key(user, "X-User")
    return user


def _session_data_from(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or "data" not in body:
        abort(400, 'body must be {"data": {...}}')
    data = body["data"]
    if not isinstance(data, dict):
        abort(400, "data must be a JSON object")
    problem = _unstorable(data, _SESSION_MAX_DEPTH)
    if problem:
        abort(400, problem)
    try:
        size = len(dump_session(data).encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800" (a ValueError too)
        abort(400, "data must be valid Unicode text")
    except ValueError:  # NaN and Infinity, which Python's parser accepts but JSON lacks
        abort(400, "data must not contain NaN or Infinity")
    limit: int = current_app.config["SESSION_MAX_BYTES"]
    if size > limit:
        abort(413, f"data must be at most {limit} bytes as compact JSON")
    return data


def _unstorable(value: Any, depth: int) -> str | None:
    """Why some store could not keep ``value`` as it is, or None."""
    if isinstance(value, str):
        # PostgreSQL's jsonb (and text) cannot hold U+0000; refused for every store alike.
        return "data must not contain NUL characters" if "\x00" in value else None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    if depth <= 0:
        return f"data must be nested at most {_SESSION_MAX_DEPTH} deep"
    for item in items:
        problem = _unstorable(item, depth - 1)
        if problem:
            return problem
    return None


def _value_from(body: Any) -> str:
    if not isinstance(body, dict) or "value" not in body:
        abort(400, 'body must be {"value": "<string>"}')
    value = body["value"]
    if not isinstance(value, str):
        abort(400, "value must be a string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates such as "\ud800" are valid JSON
        abort(400, "value must be valid Unicode text")
    limit: int = current_app.config["KV_MAX_VALUE_BYTES"]
    if size > limit:
        abort(413, f"value must be at most {limit} bytes of UTF-8")
    return value
