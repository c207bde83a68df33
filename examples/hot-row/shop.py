"""A flash sale: every checkout buys the same product, so every request updates one row
of PostgreSQL (DATABASE_URL), and holds that row's lock until its transaction ends.

POST /checkout keeps the transaction open while it charges the customer (the payment
provider's answer takes PAYMENT_MS, 2 ms by default): every other checkout, on any
replica, waits for the lock meanwhile, so the checkouts of all replicas run one at a
time. POST /checkout-fixed does the same work but holds the lock for one statement only.
"""

import os
import threading
import time
import uuid

import psycopg
from flask import Flask, current_app, jsonify, request
from psycopg_pool import ConnectionPool, PoolTimeout

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS products (
        id integer PRIMARY KEY,
        name text NOT NULL,
        price_cents integer NOT NULL,
        stock bigint NOT NULL CHECK (stock >= 0),
        sold bigint NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS orders (
        id bigserial PRIMARY KEY,
        product_id integer NOT NULL REFERENCES products (id),
        qty integer NOT NULL,
        status text NOT NULL,
        payment text,
        created_at timestamptz NOT NULL DEFAULT now())""",
    # Product 1 is the one on sale: stock enough for any benchmark.
    """INSERT INTO products (id, name, price_cents, stock) VALUES
        (1, 'limited edition sneakers', 12900, 1000000000000),
        (2, 'socks', 900, 100000), (3, 'cap', 2500, 100000)
        ON CONFLICT (id) DO NOTHING""",
)
SCHEMA_LOCK = 73012024  # pg_advisory_xact_lock key: one process creates the schema


class OrderError(Exception):
    """A bad order (400), an unknown product (404) or too little stock left (409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE_URL=os.environ.get("DATABASE_URL", "postgresql://127.0.0.1:5432/shop"),
        PAYMENT_MS=float(os.environ.get("PAYMENT_MS", "2")),
        POOL_SIZE=int(os.environ.get("POOL_SIZE", "8")),
        POOL_TIMEOUT=float(os.environ.get("POOL_TIMEOUT", "2")),  # then 503
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["shop"] = {"pool": None, "lock": threading.Lock()}

    @app.errorhandler(OrderError)
    def order_error(exc: OrderError):
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(psycopg.OperationalError)
    @app.errorhandler(PoolTimeout)
    def store_unavailable(_exc: Exception):
        return jsonify(error="store unavailable"), 503

    @app.get("/")
    def index():
        return product(1)

    @app.get("/products/<int:product_id>")
    def product(product_id: int):
        with pool().connection() as conn:  # a read: MVCC, never waits for the row lock
            row = conn.execute(
                "SELECT id, name, price_cents, stock, sold FROM products WHERE id = %s",
                (product_id,),
            ).fetchone()
        if row is None:
            raise OrderError(404, f"no product {product_id}")
        return jsonify(dict(zip(("id", "name", "price_cents", "stock", "sold"), row, strict=True)))

    @app.post("/checkout")
    def checkout():
        """The slow way: lock the row, pay, record the order, then commit."""
        product_id, qty = _order()
        with pool().connection() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE products SET stock = stock - %(qty)s, sold = sold + %(qty)s "
                "WHERE id = %(id)s AND stock >= %(qty)s RETURNING stock, price_cents",
                {"id": product_id, "qty": qty},
            ).fetchone()  # the row is locked from here to the end of the transaction
            if row is None:
                _missing(conn, product_id)
            payment = charge(row[1] * qty)  # ... while every other checkout waits
            order = conn.execute(
                "INSERT INTO orders (product_id, qty, status, payment) "
                "VALUES (%s, %s, 'paid', %s) RETURNING id",
                (product_id, qty, payment),
            ).fetchone()
        return jsonify(order=order[0], stock=row[0]), 201

    @app.post("/checkout-fixed")
    def checkout_fixed():
        """The same order, the lock held for one statement: reserve, pay, confirm."""
        product_id, qty = _order()
        with pool().connection() as conn:  # autocommit: each statement is a transaction
            row = conn.execute(
                "WITH sale AS (UPDATE products SET stock = stock - %(qty)s, "
                "sold = sold + %(qty)s WHERE id = %(id)s AND stock >= %(qty)s "
                "RETURNING stock, price_cents), "
                "o AS (INSERT INTO orders (product_id, qty, status) "
                "SELECT %(id)s, %(qty)s, 'reserved' FROM sale RETURNING id) "
                "SELECT o.id, sale.stock, sale.price_cents FROM o, sale",
                {"id": product_id, "qty": qty},
            ).fetchone()
            if row is None:
                _missing(conn, product_id)
        payment = charge(row[2] * qty)  # no lock held
        with pool().connection() as conn:
            conn.execute(
                "UPDATE orders SET status = 'paid', payment = %s WHERE id = %s", (payment, row[0])
            )
        return jsonify(order=row[0], stock=row[1]), 201

    return app


def pool() -> ConnectionPool:
    """This process's connection pool, opened on first use (after gunicorn forks)."""
    ext = current_app.extensions["shop"]
    with ext["lock"]:
        if ext["pool"] is None:
            p = ConnectionPool(
                current_app.config["DATABASE_URL"],
                min_size=1,
                max_size=current_app.config["POOL_SIZE"],
                timeout=current_app.config["POOL_TIMEOUT"],
                kwargs={"autocommit": True, "connect_timeout": 2},
                open=True,
            )
            try:
                with p.connection() as conn:
                    init_schema(conn)
            except BaseException:
                p.close()  # the next request tries again with a new pool
                raise
            ext["pool"] = p
        return ext["pool"]


def init_schema(conn: psycopg.Connection) -> None:
    """Create the tables and the products once; every process may call it at start."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        for statement in SCHEMA:
            conn.execute(statement)


def charge(amount_cents: int) -> str:
    """Stands in for the HTTP call to a payment provider: waits PAYMENT_MS for its
    answer, using no CPU here, as a real call would. Returns the payment's id."""
    time.sleep(current_app.config["PAYMENT_MS"] / 1000)
    return f"pay_{uuid.uuid4().hex[:16]}_{amount_cents}"


def _order() -> tuple[int, int]:
    body = request.get_json(silent=True) or {}
    product_id, qty = body.get("product", 1), body.get("qty", 1)
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (product_id, qty))
    if not (ints and 1 <= qty <= 10):
        raise OrderError(400, "give product (an id) and qty (1 to 10)")
    return product_id, qty


def _missing(conn: psycopg.Connection, product_id: int) -> None:
    exists = conn.execute("SELECT 1 FROM products WHERE id = %s", (product_id,)).fetchone()
    if exists is None:
        raise OrderError(404, f"no product {product_id}")
    raise OrderError(409, f"product {product_id} is sold out")
