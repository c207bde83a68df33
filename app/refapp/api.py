"""The benchmark endpoints: /json, /counter, /kv/<key> and /work."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, current_app, request

from .cpu import burn_cpu
from .store import get_store

bp = Blueprint("api", __name__)

_KEY_CHARS = re.compile(r"[A-Za-z0-9_.:-]+")
# A bounded digit string: no sign, spaces or "1_000" (all of which int() accepts).
_MS = re.compile(r"[0-9]{1,9}")


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


def _check_key(key: str) -> None:
    limit: int = current_app.config["KV_MAX_KEY_LEN"]
    if not 1 <= len(key) <= limit:
        abort(400, f"key must be 1 to {limit} characters")
    if not _KEY_CHARS.fullmatch(key):
        abort(400, "key may contain only A-Z a-z 0-9 _ . : -")


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
