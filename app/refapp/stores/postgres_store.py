"""PostgreSQL through psycopg 3: one connection pool per process, autocommit statements.

Replicas never run DDL: racing ``CREATE TABLE IF NOT EXISTS`` from many processes can
still fail on the catalog's unique indexes. The schema is made once, before replicas
start, by ``python -m refapp.init_store`` (init_schema below).

Sessions are jsonb: equal JSON comes back, not the same text (keys reordered, numbers
as exact decimals: 1e308 returns as 1000...0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from .base import PerProcess, SessionRecord, unavailable_on

# psycopg.Error covers refused/lost connections, statement_timeout (QueryCanceled), the
# pool's PoolTimeout, and a schema that init_store never created: all answered 503.
_outage = unavailable_on("postgres", psycopg.Error)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counter (name text PRIMARY KEY, value bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS kv (key text PRIMARY KEY, value text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sessions ("
    " user_id text PRIMARY KEY, data jsonb NOT NULL, version bigint NOT NULL)",
)
# Serialises concurrent init_store runs anyway (an arbitrary, fixed lock id).
_SCHEMA_LOCK_ID = 0x6873_6361_6C65  # "hscale"

_INCR = (
    "INSERT INTO counter (name, value) VALUES (%s, 1)"
    " ON CONFLICT (name) DO UPDATE SET value = counter.value + 1 RETURNING value"
)
_PUT_SESSION = (
    "INSERT INTO sessions (user_id, data, version) VALUES (%s, %s, 1)"
    " ON CONFLICT (user_id) DO UPDATE"
    " SET data = EXCLUDED.data, version = sessions.version + 1 RETURNING version"
)


class PostgresStore:
    """Counter, key-value and session operations on the tables of SCHEMA."""

    name = "postgres"

    def __init__(self, config: Mapping[str, Any]) -> None:
        c = config
        self.dsn: str = c["POSTGRES_DSN"]
        try:
            in_dsn = conninfo_to_dict(self.dsn)
        except psycopg.ProgrammingError as e:  # not a URL or key=value string
            raise ValueError(f"POSTGRES_DSN is not a valid libpq DSN: {e}") from None
        self.pool_min: int = c["POSTGRES_POOL_MIN"]
        self.pool_max: int = c["POSTGRES_POOL_MAX"]
        self.pool_timeout: float = c["POSTGRES_POOL_TIMEOUT"]
        settings = {
            "connect_timeout": c["POSTGRES_CONNECT_TIMEOUT"],
            "options": f"-c statement_timeout={c['POSTGRES_STATEMENT_TIMEOUT_MS']}",
        }
        # Like options in REDIS_URL's query, what the DSN says wins.
        self.connect_kwargs: dict[str, Any] = {k: v for k, v in settings.items() if k not in in_dsn}
        self.counter_key: str = c["COUNTER_KEY"]
        self._pool = PerProcess(self._make_pool, ConnectionPool.close)

    @property
    def pool(self) -> ConnectionPool:
        return self._pool.get()

    def _make_pool(self) -> ConnectionPool:
        pool = ConnectionPool(
            self.dsn,
            # One statement per operation: autocommit saves a BEGIN/COMMIT round trip.
            kwargs={**self.connect_kwargs, "autocommit": True},
            min_size=self.pool_min,
            max_size=self.pool_max,
            timeout=self.pool_timeout,
            # After a failed connect, give up the background attempt quickly (default:
            # retry with backoff for 5 minutes) so that the next request tries afresh
            # and a restarted server is used within about a second.
            reconnect_timeout=self.pool_timeout,
            open=False,
        )
        pool.open(wait=False)  # connects in the background; requests wait pool_timeout
        return pool

    def close(self) -> None:
        self._pool.close()

    def _one(self, query: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self.pool.connection() as conn:
            return conn.execute(query, params).fetchone()

    @_outage
    def ping(self) -> bool:
        # Reachable is not enough: until init_store has made the tables every request
        # would fail, so /readyz says not ready. LIMIT 0 reads no rows.
        self._one("SELECT NULL FROM counter, kv, sessions LIMIT 0", ())
        return True

    @_outage
    def init_schema(self) -> None:
        # A direct connection: no pool (and its threads) for a one-off command.
        with psycopg.connect(self.dsn, **self.connect_kwargs) as conn, conn.transaction():
            # The replicas' statement timeout is for requests: a run queued behind
            # another's lock may wait longer.
            conn.execute("SET LOCAL statement_timeout = '30s'")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
            for statement in SCHEMA:
                conn.execute(statement)

    @_outage
    def incr_counter(self) -> int:
        row = self._one(_INCR, (self.counter_key,))
        assert row is not None  # RETURNING always yields the row
        return int(row[0])

    @_outage
    def get_counter(self) -> int:
        row = self._one("SELECT value FROM counter WHERE name = %s", (self.counter_key,))
        return 0 if row is None else int(row[0])

    @_outage
    def get(self, key: str) -> str | None:
        row = self._one("SELECT value FROM kv WHERE key = %s", (key,))
        return None if row is None else str(row[0])

    @_outage
    def set(self, key: str, value: str) -> None:
        self._one(
            "INSERT INTO kv (key, value) VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value RETURNING 1",
            (key, value),
        )

    @_outage
    def get_session(self, user: str) -> SessionRecord | None:
        row = self._one("SELECT data, version FROM sessions WHERE user_id = %s", (user,))
        return None if row is None else {"data": row[0], "version": int(row[1])}

    @_outage
    def put_session(self, user: str, data: dict[str, Any]) -> int:
        row = self._one(_PUT_SESSION, (user, Jsonb(data)))
        assert row is not None
        return int(row[0])
