"""Read-only SQL execution (agentgym.tools.sql) on a real SQLite file and a real PostgreSQL server."""

import asyncio
import hashlib
import time

import pytest

from agentgym.errors import EnvironmentClosedError
from agentgym.tasks.sql.databases import load_postgres, sqlite_path
from agentgym.tools.sql import (
    LocalPostgres,
    PostgresDatabase,
    PostgresUnavailable,
    QueryError,
    QueryTimeout,
    SQLiteDatabase,
)

DB = "shop_0"
LIMIT = 0.5  # statement time limit of the safety tests, seconds

# Statements an agent might try to change or escape the database; every one must be refused.
WRITES = [
    "DROP TABLE customers",
    "UPDATE customers SET city = 'Nowhere'",
    "DELETE FROM orders",
    "INSERT INTO suppliers VALUES (999, 'Evil', 'Nowhere', 1)",
    "CREATE TABLE evil (x INTEGER)",
    "CREATE TEMP TABLE evil (x INTEGER)",
    "ALTER TABLE customers ADD COLUMN evil TEXT",
    "CREATE INDEX evil ON customers (city)",
    "ATTACH DATABASE '/tmp/agentgym-evil.db' AS evil",
    "PRAGMA writable_schema = 1",
    "PRAGMA writable_schema = ON",
    "SELECT load_extension('/tmp/agentgym-evil.so')",
    "BEGIN",
    "VACUUM",
    "SELECT 1; DROP TABLE customers",
]
RUNAWAY = [
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT MAX(x) FROM c",
    "SELECT COUNT(*) FROM order_items a, order_items b, order_items c",
    "SELECT a.order_item_id FROM order_items a, order_items b, order_items c ORDER BY a.quantity * b.quantity * c.quantity",
]
STREAMING = [
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c",
    "SELECT a.order_item_id, b.order_item_id FROM order_items a, order_items b",
]


@pytest.fixture(scope="module")
def sqlite_file(tmp_path_factory):
    return sqlite_path(DB, tmp_path_factory.mktemp("sqlcache"))


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----- SQLite -------------------------------------------------------------------------------------
async def test_sqlite_lists_and_describes_tables(sqlite_file):
    async with SQLiteDatabase(sqlite_file) as db:
        assert await db.tables() == sorted(["customers", "order_items", "orders", "products", "reviews", "suppliers"])
        cols = {c.name: c for c in await db.describe("ORDERS")}
        assert cols["order_id"].primary_key and cols["order_id"].type == "INTEGER"
        assert cols["customer_id"].references == "customers.customer_id" and not cols["customer_id"].nullable
        assert cols["shipped_date"].nullable and cols["shipped_date"].type == "DATE"
        with pytest.raises(QueryError, match="no such table: 'nope'.*customers"):
            await db.describe("nope")


async def test_sqlite_query_rows_limit_and_errors(sqlite_file):
    async with SQLiteDatabase(sqlite_file, max_rows=5) as db:
        res = await db.query("SELECT customer_id, city FROM customers ORDER BY customer_id")
        assert res.columns == ("customer_id", "city") and len(res.rows) == 5 and res.truncated
        res = await db.query("SELECT COUNT(*) AS n FROM customers", max_rows=1)
        assert res.columns == ("n",) and res.rows[0][0] > 100 and not res.truncated
        with pytest.raises(QueryError, match="no such column: nope"):
            await db.query("SELECT nope FROM customers")
        with pytest.raises(QueryError, match="syntax error"):
            await db.query("SELECT * FROM customers WHERE WHERE")
        # reads of the schema table are allowed (it is how SQLite users list tables)
        assert (await db.query("SELECT COUNT(*) FROM sqlite_master")).rows[0][0] >= 6


@pytest.mark.parametrize("sql", WRITES)
async def test_sqlite_refuses_writes_and_escapes(sqlite_file, sql):
    before = _sha(sqlite_file)
    async with SQLiteDatabase(sqlite_file) as db:
        with pytest.raises(QueryError) as err:
            await db.query(sql)
        assert str(err.value)
        assert (await db.query("SELECT COUNT(*) FROM customers")).rows[0][0] > 100  # still usable
    assert _sha(sqlite_file) == before


@pytest.mark.parametrize("sql", RUNAWAY)
async def test_sqlite_stops_runaway_queries(sqlite_file, sql):
    before = _sha(sqlite_file)
    async with SQLiteDatabase(sqlite_file, timeout=LIMIT) as db:
        start = time.monotonic()
        with pytest.raises(QueryTimeout, match="time limit"):
            await db.query(sql)
        assert time.monotonic() - start < LIMIT + 2.0
        assert (await db.query("SELECT 1")).rows == [(1,)]
    assert _sha(sqlite_file) == before


@pytest.mark.parametrize("sql", STREAMING)
async def test_sqlite_row_limit_bounds_endless_results(sqlite_file, sql):
    async with SQLiteDatabase(sqlite_file, timeout=LIMIT, max_rows=100) as db:
        res = await db.query(sql)
        assert len(res.rows) == 100 and res.truncated


async def test_sqlite_caps_value_and_result_sizes(sqlite_file):
    async with SQLiteDatabase(sqlite_file) as db:
        with pytest.raises(QueryError, match="too big"):
            await db.query("SELECT randomblob(1000000000)")
        with pytest.raises(QueryError, match="larger than 8000000 bytes"):
            await db.query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000) "
                           "SELECT zeroblob(999999) FROM c")
        with pytest.raises(QueryError, match="null character"):
            await db.query("SELECT 'a\x00b'")


async def test_sqlite_does_not_block_the_event_loop(sqlite_file):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    async with SQLiteDatabase(sqlite_file, timeout=0.3) as db:
        with pytest.raises(QueryTimeout):
            await db.query(RUNAWAY[0])
    task.cancel()
    assert ticks >= 5


async def test_sqlite_lifecycle(sqlite_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SQLiteDatabase(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()
    with pytest.raises(ValueError, match="timeout must be positive"):
        SQLiteDatabase(sqlite_file, timeout=0)
    db = SQLiteDatabase(sqlite_file)
    await db.aclose()
    assert db.closed
    await db.aclose()  # twice is fine
    with pytest.raises(EnvironmentClosedError):
        await db.query("SELECT 1")


# ----- PostgreSQL ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def postgres(sqlite_file):
    pytest.importorskip("psycopg", reason="the PostgreSQL back end needs psycopg[binary]")
    server = LocalPostgres()
    try:
        server.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL cannot start here: {exc}")
    try:
        dsn = load_postgres(server.dsn(), [DB])
        yield server, dsn
    finally:
        server.stop()


def _pg_checksum(server):
    import psycopg

    with psycopg.connect(server.dsn()) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (DB,))]
        out = []
        for t in tables:
            out.append(conn.execute(f'SELECT md5(string_agg(t::text, \'|\' ORDER BY t::text)) FROM {DB}."{t}" t').fetchone())
        return tables, out


async def test_postgres_lists_describes_and_queries(postgres):
    _, dsn = postgres
    async with PostgresDatabase(dsn, DB, max_rows=5) as db:
        assert await db.tables() == sorted(["customers", "order_items", "orders", "products", "reviews", "suppliers"])
        cols = {c.name: c for c in await db.describe("products")}
        assert cols["product_id"].primary_key and cols["price"].type == "numeric(10,2)"
        assert cols["supplier_id"].references == "suppliers.supplier_id"
        res = await db.query("SELECT first_name FROM customers WHERE first_name LIKE 'J%' ORDER BY customer_id;")
        assert len(res.rows) == 5 and res.truncated and all(r[0].startswith("J") for r in res.rows)
        with pytest.raises(QueryError, match='column "nope" does not exist'):
            await db.query("SELECT nope FROM customers")
        with pytest.raises(QueryError, match="no such table"):
            await db.describe("nope")


@pytest.mark.parametrize("sql", WRITES + ["SELECT set_config('transaction_read_only', 'off', false)",
                                          "SELECT pg_read_file('/etc/passwd')", "COPY customers TO '/tmp/x'"])
async def test_postgres_refuses_writes_and_escapes(postgres, sql):
    server, dsn = postgres
    before = _pg_checksum(server)
    async with PostgresDatabase(dsn, DB) as db:
        with pytest.raises(QueryError):
            await db.query(sql)
        assert (await db.query("SELECT COUNT(*) FROM customers")).rows[0][0] > 100
    assert _pg_checksum(server) == before


@pytest.mark.parametrize("sql", RUNAWAY + ["SELECT pg_sleep(30)"])
async def test_postgres_stops_runaway_queries(postgres, sql):
    _, dsn = postgres
    async with PostgresDatabase(dsn, DB, timeout=LIMIT) as db:
        start = time.monotonic()
        with pytest.raises(QueryTimeout, match="time limit"):
            await db.query(sql)
        assert time.monotonic() - start < LIMIT + 3.0
        assert (await db.query("SELECT 1")).rows == [(1,)]


@pytest.mark.parametrize("sql", STREAMING)
async def test_postgres_row_limit_bounds_endless_results(postgres, sql):
    _, dsn = postgres
    async with PostgresDatabase(dsn, DB, timeout=LIMIT, max_rows=100) as db:
        res = await db.query(sql)
        assert len(res.rows) == 100 and res.truncated


async def test_postgres_caps_result_sizes(postgres):
    _, dsn = postgres
    async with PostgresDatabase(dsn, DB, timeout=LIMIT) as db:
        with pytest.raises(QueryError, match="larger than 8000000 bytes"):
            await db.query("SELECT repeat('x', 100000) FROM generate_series(1, 1000)")


def test_postgres_role_cannot_write_even_outside_the_wrapper(postgres):
    import psycopg

    server, dsn = postgres
    before = _pg_checksum(server)
    for sql in (f"DROP TABLE {DB}.customers", f"UPDATE {DB}.customers SET city = 'x'", "CREATE TABLE public.evil (x int)",
                "CREATE SCHEMA evil"):
        with psycopg.connect(dsn, autocommit=True) as conn:
            with pytest.raises(psycopg.Error):
                conn.execute("SET default_transaction_read_only = off")  # allowed: the privileges still hold
                conn.execute(sql)
    assert _pg_checksum(server) == before


async def test_postgres_bad_dsn_is_a_clear_error():
    pytest.importorskip("psycopg", reason="the PostgreSQL back end needs psycopg[binary]")
    async with PostgresDatabase("host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=2", "x") as db:
        with pytest.raises(QueryError, match="cannot connect to PostgreSQL"):
            await db.query("SELECT 1")
    with pytest.raises(ValueError, match="plain identifier"):
        PostgresDatabase("host=x", "bad schema; drop")


def test_local_postgres_stop_removes_everything(postgres):
    server = LocalPostgres().start()
    folder, port = server._dir, server.port
    assert folder.is_dir()
    server.stop()
    server.stop()
    assert not folder.exists() and server.port is None
    import socket

    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_local_postgres_explains_why_it_cannot_start():
    import os

    if os.geteuid() != 0:
        pytest.skip("only root must pick an unprivileged user to run PostgreSQL as")
    with pytest.raises(PostgresUnavailable, match="no unprivileged user.*useradd"):
        LocalPostgres(user="agentgym-no-such-user").start()


async def test_postgres_sessions_cannot_read_each_others_queries(postgres):
    _, dsn = postgres
    async with PostgresDatabase(dsn, DB) as env_a, PostgresDatabase(dsn, DB) as env_b:
        await env_a.query("SELECT COUNT(*) FROM customers WHERE city = 'gold-query-secret'")
        seen = await env_b.query("SELECT COALESCE(query, '') FROM pg_stat_activity")
        assert seen.rows and not any("secret" in r[0] for r in seen.rows)
        with pytest.raises(QueryError, match="permission denied"):
            await env_b.query("SELECT set_config('track_activities', 'on', false)")
