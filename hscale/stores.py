"""The data stores: one entry each, holding everything about a store that differs.

A store also needs a backend in the app (app/refapp/stores/, keyed by the same name; a
test checks the two lists agree) and, for the local runtime, a server class
(hscale/runtimes/local_stores.py, named here as "module:Class" so this module imports
nothing heavy). Adding a store: its entry here, its app backend, its tests. Nothing else
names stores: settings, the runtimes, the compose-to-stack translation, the install hints
and `make compare` all read this table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from hscale.runtimes import RUNTIMES


@dataclass(frozen=True)
class Store:
    name: str
    what: str  # one line for `hscale knobs` and errors
    local: str  # "module:Class" of its local-runtime server (runtimes/local_stores.py)
    service: str | None = None  # docker-compose.yml service that runs it
    profile: str | None = None  # the compose profile that service is under (None: default)
    version_cmd: tuple[str, ...] = ()  # prints its version inside that service's container
    needs_init: bool = False  # the app's init_store creates its schema before replicas start
    package: str | None = None  # the Debian package of its local server binaries
    binaries: tuple[str, ...] = ()  # those binaries
    runtimes: tuple[str, ...] = tuple(RUNTIMES)  # the runtimes that can start it
    # Your app (APP, IMAGE) gets the conventional variable beside the reference app's
    # APP_* one: (conventional name, the APP_* variable it copies).
    user_env: tuple[tuple[str, str], ...] = ()
    for_reference: bool = True  # the reference app has a backend for it
    for_user_apps: bool = True  # APP and IMAGE can use it

    def local_class(self) -> type:
        module, _, cls = self.local.partition(":")
        return getattr(importlib.import_module(module), cls)


_LOCAL = "hscale.runtimes.local_stores"
STORES: dict[str, Store] = {
    s.name: s
    for s in (
        Store(
            "redis",
            "one Redis server, shared by every replica",
            f"{_LOCAL}:RedisStore",
            service="redis",
            version_cmd=("redis-server", "--version"),
            package="redis-server",
            binaries=("redis-server",),
            user_env=(("REDIS_URL", "APP_REDIS_URL"),),
        ),
        Store(
            "memcached",
            "one memcached server; the counter and sessions use CAS",
            f"{_LOCAL}:MemcachedStore",
            service="memcached",
            profile="memcached",
            version_cmd=("memcached", "-V"),
            package="memcached",
            binaries=("memcached",),
            user_env=(("MEMCACHED_SERVERS", "APP_MEMCACHED_SERVER"),),
        ),
        Store(
            "postgres",
            "one PostgreSQL server; the schema is created before the replicas",
            f"{_LOCAL}:PostgresStore",
            service="postgres",
            profile="postgres",
            version_cmd=("postgres", "--version"),
            needs_init=True,
            package="postgresql",
            binaries=("postgres",),
            user_env=(("DATABASE_URL", "APP_POSTGRES_DSN"),),
        ),
        Store(
            "memory",
            "no server: each app process keeps its own dict (the anti-pattern)",
            f"{_LOCAL}:MemoryStore",
            for_user_apps=False,
        ),
        Store(
            "none",
            "no store: your app keeps no shared state (APP or IMAGE only)",
            f"{_LOCAL}:NoStore",
            for_reference=False,
        ),
    )  # fmt: skip
}


def with_user_env(name: str, app_env: dict[str, str]) -> dict[str, str]:
    """A replica's store variables: the APP_* ones and their conventional names."""
    return {
        **app_env,
        **{conv: app_env[var] for conv, var in STORES[name].user_env if var in app_env},
    }


def supported(runtime: str) -> tuple[str, ...]:
    """The stores a runtime can start."""
    return tuple(name for name, s in STORES.items() if runtime in s.runtimes)


def services() -> tuple[str, ...]:
    """docker-compose.yml's store services."""
    return tuple(s.service for s in STORES.values() if s.service)


def install_hints() -> dict[str, str]:
    """binary -> the Debian package that has it, for every store's local server."""
    return {b: s.package for s in STORES.values() if s.package for b in s.binaries}
