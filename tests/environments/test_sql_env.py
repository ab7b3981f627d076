"""sql-v0 on SQLite: tools, rewards, milestones, state keys, snapshots, policies, safety, suites."""

import datetime as dt
import hashlib
import json
import random
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentgym as ag
from agentgym.environments.sql import SQLEnv
from agentgym.environments.sql.scoring import (
    normalize_rows,
    result_overlap,
    results_match,
    schema_items,
    schema_linking,
)
from agentgym.errors import ConfigError, EnvironmentClosedError
from agentgym.tasks.sql.build import SUITES
from agentgym.tasks.sql.databases import parse_db_id, sqlite_path
from agentgym.tasks.sql.domains import DOMAINS, HELD_OUT_DOMAINS, TRAIN_DOMAINS
from agentgym.types import ToolCall

SUITE_DIR = Path(ag.__file__).resolve().parent.parent / "tasks" / "sql"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sqlcache")


@pytest.fixture
async def env(cache):
    async with ag.make("sql-v0", cache_dir=cache, timeout=0.5) as e:
        yield e


def _task(suite="train", template=None, ordered=None):
    for t in ag.load_tasks("sql-v0", suite):
        if (template is None or t.data["template"] == template) and (ordered is None or t.data["ordered"] == ordered):
            return t
    raise LookupError(template)


async def _play_expert(env, task):
    await env.reset(task)
    results = []
    while True:
        r = await env.step(env.expert_action())
        results.append(r)
        if r.terminated or r.truncated:
            return results


# ----- registry and suites ------------------------------------------------------------------------
def test_registered_with_tools_and_suites():
    assert ag.registry.spec("sql-v0").load() is SQLEnv
    assert set(ag.registry.suites("sql-v0")) >= {"train", "test", "test-seen"}
    specs = {t.name: t for t in SQLEnv().tools}
    assert sorted(specs) == ["describe_table", "list_tables", "run_query", "submit"]
    assert specs["run_query"].parameters["required"] == ["sql"]
    assert specs["describe_table"].parameters["properties"]["name"]["type"] == "string"
    assert specs["list_tables"].parameters["properties"] == {}


def test_suites_are_well_formed():
    sizes = {}
    for suite, (split, db_ids, per_db) in SUITES.items():
        tasks = ag.load_tasks("sql-v0", suite)
        sizes[suite] = len(tasks)
        assert len(tasks) == len(db_ids) * per_db
        assert len({t.id for t in tasks}) == len(tasks)
        for t in tasks:
            assert t.env == "sql-v0" and t.split == split and t.prompt
            assert {m.id for m in t.milestones} == {"schema_explored", "valid_query", "right_tables", "correct_result"}
            assert t.data["db"] in db_ids and t.data["difficulty"] in ("easy", "medium", "hard")
            assert parse_db_id(t.data["db"]) == (DOMAINS[t.data["domain"]], t.data["seed"])
        assert {t.data["difficulty"] for t in tasks} == {"easy", "medium", "hard"}
    assert sizes["train"] >= 200 and sizes["test"] >= 100


def test_held_out_suite_uses_schemas_never_seen_in_train():
    train = ag.load_tasks("sql-v0", "train")
    test = ag.load_tasks("sql-v0", "test")
    train_tables = {tb for d in TRAIN_DOMAINS for tb in (t.name for t in DOMAINS[d].tables)}
    test_tables = {tb for d in HELD_OUT_DOMAINS for tb in (t.name for t in DOMAINS[d].tables)}
    assert not train_tables & test_tables
    assert {t.data["domain"] for t in train} == set(TRAIN_DOMAINS)
    assert {t.data["domain"] for t in test} == set(HELD_OUT_DOMAINS)
    for t in test:  # no held-out table name appears in any train question or gold query
        assert not set(t.data["tables"]) & train_tables
    train_text = " ".join(t.data["gold"] for t in train).lower()
    assert not any(f" {tb} " in f" {train_text} " for tb in test_tables)
    seen = ag.load_tasks("sql-v0", "test-seen")  # seen schemas, databases not in train
    assert {t.data["domain"] for t in seen} <= set(TRAIN_DOMAINS)
    assert not {t.data["db"] for t in seen} & {t.data["db"] for t in train}


def test_suites_regenerate_identically(cache, monkeypatch, tmp_path):
    from agentgym.tasks.sql.__main__ import main

    monkeypatch.setenv("AGENTGYM_SQL_CACHE", str(cache / "fresh"))
    assert main(["build", "--check", "--out", str(SUITE_DIR)]) == 0  # the committed suites, from fresh databases
    assert main(["build", "--check", "--out", str(tmp_path)]) == 1  # nothing there yet
    assert main(["build", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{suite}.jsonl" for suite in SUITES)
    assert main(["build", "--check", "--out", str(tmp_path)]) == 0


def test_databases_are_deterministic_and_realistic(cache, tmp_path):
    import sqlite3

    a, b = sqlite_path("hospital_1", cache), sqlite_path("hospital_1", tmp_path)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    for d in DOMAINS:
        conn = sqlite3.connect(sqlite_path(f"{d}_0", cache))
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert 3 <= len(tables) <= 8
        fks = sum(len(conn.execute(f"PRAGMA foreign_key_list({t})").fetchall()) for t in tables)
        assert fks >= len(tables) - 2
        nulls = dates = 0
        for domain_table in DOMAINS[d].tables:
            for c in domain_table.columns:
                if c.nullable:
                    nulls += conn.execute(f"SELECT COUNT(*) FROM {domain_table.name} WHERE {c.name} IS NULL").fetchone()[0]
                if c.type == "date":
                    lo, hi = conn.execute(f"SELECT MIN({c.name}), MAX({c.name}) FROM {domain_table.name}").fetchone()
                    assert dt.date.fromisoformat(lo) < dt.date.fromisoformat(hi)
                    dates += 1
        assert nulls > 0 and dates > 0
        conn.close()
    with pytest.raises(ValueError, match="<domain>_<seed>"):
        parse_db_id("casino_1")


# ----- tools ----------------------------------------------------------------------------------------
async def test_reset_and_list_tables(env):
    task = _task(template="join_filter")
    obs = await env.reset(task)
    assert obs.startswith(task.prompt) and "read-only SQLite database" in obs and "submit" in obs
    r = await env.step(ToolCall(name="list_tables"))
    assert r.valid and r.observation.startswith("Tables: ") and "customers" in r.observation


async def test_describe_table_shows_columns_keys_and_samples(env):
    await env.reset(_task(template="join_filter"))
    r = await env.step(ToolCall(name="describe_table", arguments={"name": "orders"}))
    assert r.valid
    assert "order_id: INTEGER, primary key" in r.observation
    assert "customer_id: INTEGER, not null, references customers.customer_id" in r.observation
    assert "shipped_date: DATE\n" in r.observation
    assert "Sample rows:\norder_id | customer_id | order_date | status | shipped_date" in r.observation
    bad = await env.step(ToolCall(name="describe_table", arguments={"name": "clients"}))
    assert not bad.valid and "no table named 'clients'" in bad.observation and "customers" in bad.observation


async def test_run_query_shows_a_bounded_preview_or_the_error(cache):
    async with SQLEnv(cache_dir=cache, preview_rows=3, max_rows=50) as env:
        await env.reset(_task())
        r = await env.step(ToolCall(name="run_query", arguments={"sql": "SELECT customer_id, city FROM customers"}))
        lines = r.observation.splitlines()
        assert r.valid and lines[0] == "more than 50 rows (showing the first 3):" and lines[1] == "customer_id | city"
        assert len(lines) == 5
        r = await env.step(ToolCall(name="run_query", arguments={"sql": "SELECT COUNT(*) FROM suppliers"}))
        assert r.observation.startswith("1 row:\nCOUNT(*)\n")
        r = await env.step(ToolCall(name="run_query", arguments={"sql": "SELECT * FROM suppliers WHERE 1 = 0"}))
        assert r.observation.startswith("0 rows.")
        r = await env.step(ToolCall(name="run_query", arguments={"sql": "SELECT nope FROM customers"}))
        assert r.valid and r.observation == "Error: no such column: nope" and not r.terminated
        r = await env.step(ToolCall(name="run_query", arguments={"sql": "  "}))
        assert not r.valid and "empty" in r.observation
        r = await env.step("SELECT COUNT(*) FROM customers")  # bare SQL text runs as run_query
        assert r.valid and r.observation.startswith("1 row:")


async def test_expert_solves_a_task_with_all_milestones(env):
    task = _task(template="two_hop")
    results = await _play_expert(env, task)
    names = [json.dumps(r.milestones) for r in results]
    assert results[-1].terminated and results[-1].reward == 1.0 and env.success
    assert results[-1].info["reward_parts"]["execution"] == 1.0
    assert len(results) == 2 + len(task.data["tables"])  # list, describe each table, submit
    assert "schema_explored" in results[-2].milestones
    assert set(results[-1].milestones) == {"valid_query", "right_tables", "correct_result"}, names
    assert env.reached == ["schema_explored", "valid_query", "right_tables", "correct_result"]


async def test_submit_ends_the_episode(env):
    task = _task()
    await env.reset(task)
    r = await env.step(ToolCall(name="submit", arguments={"sql": "SELECT 1, 2"}))
    assert r.terminated and not env.success and r.observation.startswith("Submitted. Incorrect")
    gold = await env.db.query(task.data["gold"])
    shape = f"{len(gold.rows)} row{'s' if len(gold.rows) != 1 else ''} of {len(gold.rows[0])} column"
    assert f"the result (1 row of 2 columns) does not match the expected answer ({shape}" in r.observation
    r2 = await env.step(ToolCall(name="list_tables"))
    assert not r2.valid and r2.observation == "The episode is over."


# ----- rewards ---------------------------------------------------------------------------------------
async def _submit(env, task, sql):
    await env.reset(task)
    r = await env.step(ToolCall(name="submit", arguments={"sql": sql}))
    return r, r.info["reward_parts"]


async def test_execution_accuracy_is_order_insensitive_unless_the_question_orders(env):
    unordered = _task(template="filter_cat")
    r, parts = await _submit(env, unordered, f"SELECT * FROM ({unordered.data['gold']}) AS g ORDER BY 1 DESC")
    assert parts["execution"] == 1.0 and r.reward == 1.0 and env.success
    ordered = _task(template="top_k")
    gold = ordered.data["gold"]
    r, parts = await _submit(env, ordered, gold)
    assert parts["execution"] == 1.0
    # top_k selects the shown columns then the ranked one; reverse the ranking
    n_cols = len((await env.db.query(gold)).columns)
    flip = "ASC" if " DESC " in gold else "DESC"
    r, parts = await _submit(env, ordered, f"SELECT * FROM ({gold}) AS g ORDER BY {n_cols} {flip}")
    assert parts["execution"] == 0.0 and parts["overlap"] == 1.0 and not env.success


def _task_with_rows(template, at_least, cache):
    import sqlite3

    for t in ag.load_tasks("sql-v0", "train"):
        if t.data["template"] == template:
            conn = sqlite3.connect(sqlite_path(t.data["db"], cache))
            n = len(conn.execute(t.data["gold"]).fetchall())
            conn.close()
            if n >= at_least:
                return t
    raise LookupError(template)


async def test_partial_rewards_syntax_schema_and_overlap(env, cache):
    task = _task_with_rows("filter_cat", 6, cache)
    gold = task.data["gold"]
    w = env.weights
    # a query that fails: no syntax credit, no overlap, schema credit for the right table
    r, p = await _submit(env, task, gold.replace("SELECT", "SELEC"))
    assert p["syntax"] == 0.0 and p["overlap"] == 0.0 and 0 < p["schema"] <= 1
    assert r.reward == pytest.approx(w["schema"] * p["schema"]) and not env.success
    # runs, right table and columns, some of the rows: overlap between 0 and 1
    r, p = await _submit(env, task, gold + " LIMIT 3")
    assert p["syntax"] == 1.0 and p["execution"] == 0.0 and 0 < p["overlap"] < 1 and p["schema"] == 1.0
    assert r.reward == pytest.approx(w["syntax"] + w["schema"] + w["overlap"] * p["overlap"])
    assert r.reward < w["execution"]
    # the right table without the right columns: partial schema linking
    r, p = await _submit(env, task, f"SELECT COUNT(*) FROM {task.data['tables'][0]}")
    assert 0 < p["schema"] < 1 and p["overlap"] == 0.0
    # runs on unrelated tables: syntax credit only
    r, p = await _submit(env, task, "SELECT rating FROM reviews WHERE rating > 99")
    assert p == {"execution": 0.0, "syntax": 1.0, "schema": 0.0, "overlap": 0.0, "reward": w["syntax"]}


async def test_reward_weights_are_configurable(cache):
    task = _task(template="filter_cat")
    async with SQLEnv(cache_dir=cache, reward_weights={"syntax": 0.0, "schema": 0.0, "overlap": 0.0}) as env:
        r, p = await _submit(env, task, task.data["gold"] + " AND 1 = 0")
        assert r.reward == 0.0 and p["syntax"] == 1.0
        r, p = await _submit(env, task, task.data["gold"])
        assert r.reward == 1.0
    async with SQLEnv(cache_dir=cache, reward_weights={"execution": 2.0}) as env:
        r, _ = await _submit(env, task, task.data["gold"])
        assert r.reward == 2.0
    with pytest.raises(ConfigError, match="unknown reward weights"):
        SQLEnv(reward_weights={"style": 1.0})


def test_scoring_normalizes_backend_representations():
    sqlite_rows = normalize_rows([("2024-01-05", 12.5, 3.0, None), ("2023-02-01", 1 / 3, 2, "x")])
    pg_rows = normalize_rows([(dt.date(2023, 2, 1), Decimal("0.33333333333333333"), Decimal("2"), "x"),
                              (dt.date(2024, 1, 5), Decimal("12.50"), 3, None)])
    assert results_match(sqlite_rows, pg_rows, ordered=False)
    assert not results_match(sqlite_rows, pg_rows, ordered=True)
    assert not results_match(sqlite_rows, pg_rows[:1], ordered=False)
    assert not results_match([(1, 2)], [(2, 1)], ordered=False)
    assert results_match([(0.1 + 0.2,)], [(0.3,)], ordered=True)
    assert result_overlap([(1,), (2,)], [(2,), (3,)]) == pytest.approx(1 / 3)
    assert result_overlap([(1,), (1,)], [(1,)]) == pytest.approx(0.5)


def test_schema_linking_ignores_aliases_strings_and_comments():
    schema = {"customers": ["customer_id", "city", "name"], "orders": ["order_id", "customer_id", "status"]}
    sql = ("SELECT c.city -- orders here\n FROM customers c WHERE c.name = 'orders status' /* status */ "
           "AND \"customer_id\" > 3")
    assert schema_items(sql, schema) == ({"customers"}, {"city", "name", "customer_id"})
    gold = "SELECT city FROM customers WHERE name = 'x'"
    assert schema_linking(gold, gold, schema) == 1.0
    assert schema_linking("SELECT status FROM orders", gold, schema) == 0.0
    assert 0 < schema_linking("SELECT city FROM customers", gold, schema) < 1


# ----- milestones and state ----------------------------------------------------------------------------
async def test_milestones_are_reached_by_their_own_actions(env):
    task = _task(template="join_filter")
    await env.reset(task)
    child, parent = task.data["tables"]
    r = await env.step(ToolCall(name="describe_table", arguments={"name": child}))
    assert r.milestones == []
    r = await env.step(ToolCall(name="describe_table", arguments={"name": parent}))
    assert r.milestones == ["schema_explored"]
    r = await env.step(ToolCall(name="run_query", arguments={"sql": f"SELECT * FROM {parent} WHERE"}))
    assert r.milestones == []
    r = await env.step(ToolCall(name="run_query", arguments={"sql": f"SELECT COUNT(*) FROM {parent}"}))
    assert r.milestones == ["valid_query"]
    r = await env.step(ToolCall(name="run_query", arguments={"sql": f"SELECT COUNT(*) FROM {parent}, {child}"}))
    assert r.milestones == ["right_tables"]
    r = await env.step(ToolCall(name="submit", arguments={"sql": task.data["gold"]}))
    assert r.milestones == ["correct_result"] and r.reward == 1.0


async def test_state_key_tracks_knowledge_not_turns(env):
    task = _task(template="join_filter")
    await env.reset(task)
    k0 = env.state_key()
    r1 = await env.step(ToolCall(name="list_tables"))
    r2 = await env.step(ToolCall(name="list_tables"))
    assert r1.state_key == r2.state_key != k0
    r3 = await env.step(ToolCall(name="describe_table", arguments={"name": "orders"}))
    assert r3.state_key != r2.state_key and "described=orders" in r3.state_key
    a = await env.step(ToolCall(name="run_query", arguments={"sql": "SELECT COUNT(*) FROM suppliers"}))
    b = await env.step(ToolCall(name="run_query", arguments={"sql": "select count(supplier_id) as n from suppliers"}))
    c = await env.step(ToolCall(name="run_query", arguments={"sql": "SELECT COUNT(*) FROM customers"}))
    assert a.state_key == b.state_key != c.state_key
    e1 = await env.step(ToolCall(name="run_query", arguments={"sql": "SELECT nope FROM suppliers"}))
    assert e1.state_key != c.state_key and "last=error:" in e1.state_key
    # two histories that learned the same things meet in the same state
    await env.reset(task)
    await env.step(ToolCall(name="describe_table", arguments={"name": "orders"}))
    await env.step(ToolCall(name="list_tables"))
    x = await env.step(ToolCall(name="run_query", arguments={"sql": "SELECT nope FROM suppliers"}))
    assert x.state_key == e1.state_key


async def test_snapshot_and_restore(env):
    task = _task(template="join_count")
    await env.reset(task)
    await env.step(env.expert_action())
    await env.step(env.expert_action())
    snap = env.snapshot()
    key, reached = env.state_key(), list(env.reached)
    await env.step(ToolCall(name="run_query", arguments={"sql": "SELECT COUNT(*) FROM products"}))
    await env.step(ToolCall(name="submit", arguments={"sql": "SELECT 1"}))
    assert env.done
    env.restore(snap)
    assert env.state_key() == key and env.reached == reached and not env.done and env.turn == 2
    while not env.done:
        r = await env.step(env.expert_action())
    assert env.success and r.reward == 1.0
    await env.reset(_task(template="count_all"))
    with pytest.raises(ValueError, match="reset to that task"):
        env.restore(snap)


# ----- policies over the suites ------------------------------------------------------------------------
@pytest.mark.parametrize("suite", list(SUITES))
async def test_expert_scores_100_percent(cache, suite):
    tasks = ag.load_tasks("sql-v0", suite)
    async with SQLEnv(cache_dir=cache) as env:
        solved = 0
        for task in tasks:
            results = await _play_expert(env, task)
            solved += env.success and results[-1].reward == 1.0
            assert env.reached == ["schema_explored", "valid_query", "right_tables", "correct_result"], task.id
    assert solved == len(tasks)


async def test_random_policy_runs_and_changes_nothing(cache):
    from agentgym.policies.scripted import RandomPolicy

    tasks = ag.load_tasks("sql-v0", "test")[:20]
    paths = {sqlite_path(t.data["db"], cache) for t in tasks}
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    policy, rng = RandomPolicy(), random.Random(0)
    kinds = set()
    async with SQLEnv(cache_dir=cache, timeout=0.5) as env:
        for task in tasks:
            await env.reset(task)
            while True:
                action = await policy.act(env, rng)
                kinds.add(action.name)
                r = await env.step(action)
                assert r.state_key
                if r.terminated or r.truncated:
                    break
    assert kinds == {"list_tables", "describe_table", "run_query", "submit"}
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths} == before


# ----- safety through the environment ----------------------------------------------------------------------
UNSAFE = ["DROP TABLE customers", "UPDATE customers SET city = 'x'", "ATTACH DATABASE '/tmp/agentgym-x.db' AS x",
          "PRAGMA writable_schema = 1", "SELECT load_extension('x')"]
RUNAWAY = ["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT MAX(x) FROM c",
           "SELECT COUNT(*) FROM order_items a, order_items b, order_items c"]


async def test_unsafe_and_runaway_queries_are_reported_and_change_nothing(env, cache):
    task = _task()
    await env.reset(task)
    path = sqlite_path(task.data["db"], cache)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for sql in UNSAFE:
        for tool_name in ("run_query", "submit"):
            await env.reset(task)
            r = await env.step(ToolCall(name=tool_name, arguments={"sql": sql}))
            assert r.valid and "not authorized" in r.observation, (sql, r.observation)
            assert r.terminated == (tool_name == "submit")
    for sql in RUNAWAY:
        await env.reset(task)
        r = await env.step(ToolCall(name="run_query", arguments={"sql": sql}))
        assert "time limit" in r.observation and not r.terminated and "last=timeout" in r.state_key
        r = await env.step(ToolCall(name="run_query", arguments={"sql": "SELECT COUNT(*) FROM customers"}))
        assert r.observation.startswith("1 row:")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


# ----- configuration and lifecycle -------------------------------------------------------------------------
async def test_bad_options_and_lifecycle(cache):
    with pytest.raises(ConfigError, match="backend must be"):
        SQLEnv(backend="mysql")
    with pytest.raises(ConfigError, match="needs dsn"):
        SQLEnv(backend="postgres")
    with pytest.raises(ConfigError, match="timeout must be positive"):
        SQLEnv(timeout=0)
    env = SQLEnv(cache_dir=cache)
    await env.reset(_task())
    db = env.db
    await env.aclose()
    assert db.closed and env.closed
    with pytest.raises(EnvironmentClosedError):
        await env.reset(_task())


# ----- scoring properties ----------------------------------------------------------------------------------
_values = st.one_of(st.none(), st.integers(-10**6, 10**6), st.text(max_size=5),
                    st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 2)))
_rows = st.lists(st.tuples(_values, _values), max_size=12)


@settings(max_examples=150, deadline=None)
@given(_rows, st.randoms(use_true_random=False))
def test_results_match_is_a_multiset_comparison(rows, rnd):
    gold = normalize_rows(rows)
    shuffled = list(gold)
    rnd.shuffle(shuffled)
    assert results_match(shuffled, gold, ordered=False)
    as_decimal = normalize_rows([tuple(Decimal(str(v)) if isinstance(v, float) else v for v in r) for r in shuffled])
    assert results_match(as_decimal, gold, ordered=False)
    assert result_overlap(shuffled, gold) == 1.0
    if gold:
        assert not results_match(shuffled[1:], gold, ordered=False)
        changed = [(("changed!",) + r[1:]) for r in shuffled[:1]] + shuffled[1:]
        assert not results_match(changed, gold, ordered=False)


async def test_many_environments_share_one_event_loop(cache):
    import asyncio

    tasks = ag.load_tasks("sql-v0", "test")[:48]

    async def play(chunk):
        async with SQLEnv(cache_dir=cache) as env:
            wins = 0
            for task in chunk:
                await env.reset(task)
                while not env.done:
                    await env.step(env.expert_action())
                wins += env.success
            return wins

    results = await asyncio.gather(*(play(tasks[i::8]) for i in range(8)))
    assert sum(results) == len(tasks)


def test_bench_script_runs(cache):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "bench" / "bench_sql.py"), "--episodes", "6", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "AGENTGYM_SQL_CACHE": str(cache)})
    assert out.returncode == 0, out.stderr
    assert "steps/s" in out.stdout and "gold query latency" in out.stdout and "p99" in out.stdout
