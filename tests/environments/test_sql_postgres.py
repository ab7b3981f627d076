"""sql-v0 on a real PostgreSQL server: the same suites, the same gold results, the same safety.

The module starts a private server on 127.0.0.1 (as an unprivileged user when run as root), loads
every suite database, and stops it at the end. It skips with the reason when PostgreSQL or
psycopg is missing.
"""

import random

import pytest

import agentgym as ag
from agentgym.environments.sql import SQLEnv
from agentgym.environments.sql.scoring import normalize_rows, results_match
from agentgym.errors import ConfigError
from agentgym.tasks.sql.build import SUITES, suite_db_ids
from agentgym.tasks.sql.databases import load_postgres, sqlite_path
from agentgym.tools.sql import LocalPostgres, PostgresDatabase, PostgresUnavailable, SQLiteDatabase
from agentgym.types import ToolCall


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sqlcache")


@pytest.fixture(scope="module")
def postgres(cache):
    pytest.importorskip("psycopg", reason="the PostgreSQL back end needs psycopg[binary]")
    server = LocalPostgres()
    try:
        server.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL cannot start here: {exc}")
    try:
        mp = pytest.MonkeyPatch()
        mp.setenv("AGENTGYM_SQL_CACHE", str(cache))
        try:
            dsn = load_postgres(server.dsn(), suite_db_ids())
        finally:
            mp.undo()
        yield server, dsn
    finally:
        server.stop()


def _checksums(server):
    import psycopg

    out = {}
    with psycopg.connect(server.dsn()) as conn:
        for schema, table in conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                                          "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"):
            out[(schema, table)] = conn.execute(
                f'SELECT COUNT(*), md5(string_agg(t::text, \'|\' ORDER BY t::text)) FROM "{schema}"."{table}" t').fetchone()
    return out


@pytest.mark.parametrize("suite", list(SUITES))
async def test_gold_sql_gives_the_same_result_on_both_back_ends(postgres, cache, suite):
    _, dsn = postgres
    tasks = ag.load_tasks("sql-v0", suite)
    lite: dict[str, SQLiteDatabase] = {}
    async with PostgresDatabase(dsn, "public") as pg:
        for task in tasks:
            db_id = task.data["db"]
            if db_id not in lite:
                lite[db_id] = SQLiteDatabase(sqlite_path(db_id, cache))
            pg.schema = db_id
            a = await lite[db_id].query(task.data["gold"])
            b = await pg.query(task.data["gold"])
            assert len(a.columns) == len(b.columns)
            assert results_match(normalize_rows(a.rows), normalize_rows(b.rows), ordered=task.data["ordered"]), task.id
    for db in lite.values():
        await db.aclose()


@pytest.mark.parametrize("suite", list(SUITES))
async def test_expert_scores_100_percent_on_postgres(postgres, suite):
    _, dsn = postgres
    tasks = ag.load_tasks("sql-v0", suite)
    solved = 0
    async with ag.make("sql-v0", backend="postgres", dsn=dsn) as env:
        for task in tasks:
            await env.reset(task)
            while not env.done:
                r = await env.step(env.expert_action())
            solved += env.success and r.reward == 1.0
    assert solved == len(tasks)


async def test_tools_on_postgres(postgres):
    _, dsn = postgres
    task = next(t for t in ag.load_tasks("sql-v0", "test") if t.data["domain"] == "flights")
    async with SQLEnv(backend="postgres", dsn=dsn, preview_rows=2, max_rows=20) as env:
        obs = await env.reset(task)
        assert "read-only PostgreSQL database" in obs
        r = await env.step(ToolCall(name="list_tables"))
        assert r.observation == "Tables: aircraft, airlines, airports, bookings, flights, passengers"
        r = await env.step(ToolCall(name="describe_table", arguments={"name": "bookings"}))
        assert "price: numeric(10,2), not null" in r.observation
        assert "flight_id: integer, not null, references flights.flight_id" in r.observation
        r = await env.step(ToolCall(name="run_query", arguments={"sql": "SELECT airport_code FROM airports"}))
        assert r.observation.splitlines()[0].endswith("rows (showing the first 2):")
        r = await env.step(ToolCall(name="run_query", arguments={"sql": "SELECT nope FROM airports"}))
        assert r.observation == 'Error: column "nope" does not exist' and r.valid


async def test_unsafe_runaway_and_random_episodes_change_nothing(postgres):
    from agentgym.policies.scripted import RandomPolicy

    server, dsn = postgres
    before = _checksums(server)
    task = next(t for t in ag.load_tasks("sql-v0", "train") if t.data["domain"] == "shop")
    async with SQLEnv(backend="postgres", dsn=dsn, timeout=0.5) as env:
        for sql in ["DROP TABLE customers", "UPDATE customers SET city = 'x'", "CREATE TABLE evil (x int)",
                    "SELECT 1; DELETE FROM orders"]:
            await env.reset(task)
            r = await env.step(ToolCall(name="run_query", arguments={"sql": sql}))
            assert r.observation.startswith("Error:") and ("read-only" in r.observation or "multiple" in r.observation)
        for sql in ["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT MAX(x) FROM c",
                    "SELECT COUNT(*) FROM order_items a, order_items b, order_items c"]:
            r = await env.step(ToolCall(name="run_query", arguments={"sql": sql}))
            assert "time limit" in r.observation
        policy, rng = RandomPolicy(), random.Random(1)
        for t in ag.load_tasks("sql-v0", "test")[:10]:
            await env.reset(t)
            while not (env.done or env.turn >= t.max_turns):
                await env.step(await policy.act(env, rng))
    assert _checksums(server) == before


async def test_missing_schema_is_a_clear_error(postgres):
    _, dsn = postgres
    task = ag.Task(id="x", env="sql-v0", prompt="?", data={"db": "shop_77", "gold": "SELECT 1"})
    async with SQLEnv(backend="postgres", dsn=dsn) as env:
        with pytest.raises(ConfigError, match="load_postgres"):
            await env.reset(task)
