"""Prepare the configured store once, before any replica starts.

    python -m refapp.init_store [--wait SECONDS]

Run it from app/ (in the image: /srv/app, the WORKDIR) with the replicas' ``APP_*``
environment. postgres: creates the tables (CREATE TABLE IF NOT EXISTS under an advisory
lock, so a second run changes nothing); replicas never run DDL, and answer 503 until
this has run. redis, memcached: only checks that the store answers. memory: nothing.

--wait keeps retrying for that long, for a store that is still starting.

Exit codes: 0 ready; 1 store unreachable, or it refused the schema (message on stderr);
2 bad settings or arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import create_app
from .stores import StoreUnavailable

_RETRY_EVERY_S = 0.5
_DONE = {
    "postgres": "schema ready (tables counter, kv, sessions)",
    "redis": "answers; nothing to create",
    "memcached": "answers; nothing to create",
    "memory": "nothing to prepare (each replica process keeps its own, unshared state)",
}


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m refapp.init_store",
        description="Create the store's schema (postgres) or check that it answers.",
    )
    parser.add_argument(
        "--wait", type=_seconds, default=0.0, metavar="SECONDS",
        help="keep retrying an unreachable store for this long (default: try once)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        app = create_app()
    except ValueError as e:
        print(f"init_store: bad settings: {e}", file=sys.stderr)
        return 2
    store = app.extensions["store"]
    deadline = time.monotonic() + args.wait
    try:
        while True:
            try:
                store.init_schema()
                break
            except StoreUnavailable as e:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    print(f"init_store: store unreachable: {e}", file=sys.stderr)
                    return 1
                time.sleep(min(_RETRY_EVERY_S, remaining))
    finally:
        store.close()
    print(f"init_store: {store.name}: {_DONE[store.name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
