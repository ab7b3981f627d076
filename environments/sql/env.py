"""``sql-v0``: answer a question about a relational database by exploring it and submitting SQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
import re
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path
from typing import Any

from agentgym.env import Environment, tool
from agentgym.environments.sql.scoring import (
    normalize_rows,
    result_overlap,
    results_match,
    schema_items,
    schema_linking,
)
from agentgym.errors import ConfigError, InvalidActionError
from agentgym.tasks.sql.databases import parse_db_id, sqlite_path
from agentgym.tools.sql import (
    Column,
    PostgresDatabase,
    QueryError,
    QueryResult,
    QueryTimeout,
    ReadOnlyDatabase,
    SQLiteDatabase,
)
from agentgym.types import Milestone, Task, ToolCall

MILESTONES = (
    Milestone(id="schema_explored", description="described every table the answer needs", weight=0.1),
    Milestone(id="valid_query", description="ran a query without an error", weight=0.1),
    Milestone(id="right_tables", description="ran a query that uses every table the answer needs", weight=0.2),
    Milestone(id="correct_result", description="submitted a query with the correct result", weight=1.0),
)

DEFAULT_WEIGHTS = {"execution": 1.0, "syntax": 0.1, "schema": 0.2, "overlap": 0.2}
_GOLD_CACHE_SIZE = 4096
_SQL_TEXT = re.compile(r"^\s*(?:```(?:sql)?\s*)?((?:select|with)\b.*?)(?:```\s*)?$", re.I | re.S)


class SQLEnv(Environment):
    """Text-to-SQL with execution feedback over SQLite (default) or PostgreSQL.

    Each task names a database (``task.data["db"]``, e.g. ``shop_0``) and a gold query. The
    agent lists and describes tables, runs read-only queries (seeing a bounded preview or the
    database's error message) and submits one query, which ends the episode.

    Reward at submit: ``execution`` (default 1.0) when the result matches the gold result
    (order-insensitive unless ``task.data["ordered"]``); otherwise partial credit,
    ``syntax * runs + schema * F1(tables and columns vs gold) + overlap * Jaccard(rows)``.
    Set a weight to 0 to turn its part off.

    Args:
        backend: ``"sqlite"`` (files built on first use in ``cache_dir``) or ``"postgres"``.
        dsn: PostgreSQL connection string of a read-only role whose server holds one schema per
            database id (see :func:`agentgym.tasks.sql.load_postgres`); required for postgres.
        cache_dir: Where SQLite files are built (default ``$AGENTGYM_SQL_CACHE`` or
            ``~/.cache/agentgym/sql``).
        timeout: Statement time limit in seconds.
        max_rows: Rows fetched per query; a result with more counts as truncated.
        preview_rows: Rows shown to the agent per query.
        reward_weights: Overrides of ``execution``, ``syntax``, ``schema`` and ``overlap``.
    """

    def __init__(self, *, backend: str = "sqlite", dsn: str | None = None, cache_dir: str | Path | None = None,
                 timeout: float = 2.0, max_rows: int = 1000, preview_rows: int = 10,
                 reward_weights: dict[str, float] | None = None) -> None:
        super().__init__()
        if backend not in ("sqlite", "postgres"):
            raise ConfigError(f"backend must be 'sqlite' or 'postgres', got {backend!r}")
        if backend == "postgres" and not dsn:
            raise ConfigError("backend='postgres' needs dsn='host=... user=... dbname=...' of a read-only role "
                              "(agentgym.tasks.sql.load_postgres creates it)")
        if timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {timeout}")
        if max_rows <= 0 or preview_rows <= 0:
            raise ConfigError(f"max_rows and preview_rows must be positive, got {max_rows} and {preview_rows}")
        unknown = set(reward_weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ConfigError(f"unknown reward weights {sorted(unknown)}; valid: {sorted(DEFAULT_WEIGHTS)}")
        self.backend, self.dsn, self.cache_dir = backend, dsn, cache_dir
        self.timeout, self.max_rows, self.preview_rows = float(timeout), int(max_rows), int(preview_rows)
        self.weights = {**DEFAULT_WEIGHTS, **(reward_weights or {})}
        self._db: ReadOnlyDatabase | None = None
        self._db_id: str | None = None
        self._schemas: dict[str, dict[str, list[Column]]] = {}
        self._descriptions: dict[tuple[str, str], str] = {}
        self._gold: OrderedDict[tuple[str, str], tuple[list[tuple], bool]] = OrderedDict()
        self.last_score: dict[str, float] | None = None

    # ----- episode ---------------------------------------------------------------------------
    async def reset(self, task: Task) -> str:
        data = task.data
        for key in ("db", "gold"):
            if key not in data:
                raise ConfigError(f"task {task.id} has no data[{key!r}]; sql-v0 tasks need 'db' and 'gold'")
        domain, _ = parse_db_id(data["db"])
        self.listed = False
        self.described: set[str] = set()
        self.last = "none"
        self.last_score = None
        await self._open(data["db"])
        self.schema = await self._schema(data["db"])
        self.gold_sql: str = data["gold"]
        self.ordered = bool(data.get("ordered", False))
        self.gold_tables = {t.lower() for t in data.get("tables") or
                            schema_items(self.gold_sql, self._column_names())[0]}
        self.gold_rows, gold_truncated = await self._gold_result(data["db"], self.gold_sql)
        if gold_truncated:
            raise ConfigError(f"task {task.id}: the gold result has more than {self.max_rows} rows; raise max_rows")
        name = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[self.backend]
        return (f"{task.prompt}\n\nYou are connected to a read-only {name} database about {domain.description}. "
                f"Explore it with list_tables and describe_table, try queries with run_query (it shows at most "
                f"{self.preview_rows} rows), then call submit with the one SQL query whose result answers the "
                "question: select exactly the columns asked for, in that order. Submitting ends the episode.")

    async def _open(self, db_id: str) -> None:
        if self.backend == "postgres":
            if self._db is None:
                self._db = PostgresDatabase(self.dsn or "", db_id, timeout=self.timeout, max_rows=self.max_rows)
            else:
                self._db.schema = db_id  # type: ignore[attr-defined]
        elif self._db_id != db_id:
            if self._db is not None:
                await self._db.aclose()
            self._db = None
            path = await asyncio.to_thread(sqlite_path, db_id, self.cache_dir)  # built on first use
            self._db = SQLiteDatabase(path, timeout=self.timeout, max_rows=self.max_rows)
        self._db_id = db_id

    @property
    def db(self) -> ReadOnlyDatabase:
        """The database of the current episode."""
        if self._db is None:
            raise RuntimeError("call reset(task) first")
        return self._db

    async def _schema(self, db_id: str) -> dict[str, list[Column]]:
        if db_id not in self._schemas:
            tables = await self.db.tables()
            if not tables:
                hint = (f"load it with agentgym.tasks.sql.load_postgres(admin_dsn, [{db_id!r}])"
                        if self.backend == "postgres" else "delete the cached file to rebuild it")
                raise ConfigError(f"database {db_id!r} has no tables on the {self.backend} back end; {hint}")
            self._schemas[db_id] = {t: await self.db.describe(t) for t in tables}
        return self._schemas[db_id]

    def _column_names(self) -> dict[str, list[str]]:
        return {t: [c.name for c in cols] for t, cols in self.schema.items()}

    async def _gold_result(self, db_id: str, sql: str) -> tuple[list[tuple], bool]:
        key = (db_id, sql)
        if key in self._gold:
            self._gold.move_to_end(key)
            return self._gold[key]
        res = await self.db.query(sql, timeout=max(self.timeout, 30.0))
        value = (normalize_rows(res.rows), res.truncated)
        self._gold[key] = value
        if len(self._gold) > _GOLD_CACHE_SIZE:
            self._gold.popitem(last=False)
        return value

    # ----- tools -----------------------------------------------------------------------------
    @tool
    async def list_tables(self) -> str:
        """List the tables of the database."""
        self.listed = True
        return "Tables: " + ", ".join(self.schema)

    @tool
    async def describe_table(self, name: str) -> str:
        """Show a table's columns, types and keys, and a few sample rows.

        Args:
            name: The table name, as list_tables shows it.
        """
        table = next((t for t in self.schema if t.lower() == name.strip().lower()), None)
        if table is None:
            raise InvalidActionError(f"There is no table named {name!r}. Tables: {', '.join(self.schema)}.")
        self.described.add(table.lower())
        if self.gold_tables <= self.described:
            self.reach("schema_explored")
        key = (self._db_id or "", table)
        if key not in self._descriptions:  # the database never changes: describe each table once
            self._descriptions[key] = await self._describe(table)
        return self._descriptions[key]

    async def _describe(self, table: str) -> str:
        lines = [f"Table {table}:"]
        for c in self.schema[table]:
            notes = [c.type]
            if c.primary_key:
                notes.append("primary key")
            elif not c.nullable:
                notes.append("not null")
            if c.references:
                notes.append(f"references {c.references}")
            lines.append(f"  {c.name}: {', '.join(notes)}")
        sample = await self.db.query(f"SELECT * FROM {table} LIMIT 3", max_rows=3)
        lines.append("Sample rows:")
        lines.append(_render(sample, 3, total=None))
        return "\n".join(lines)

    @tool
    async def run_query(self, sql: str) -> str:
        """Run a read-only SQL query and show the first rows of its result, or the database's error.

        Args:
            sql: One SQL statement (SELECT or WITH ... SELECT).
        """
        res = await self._execute_agent_sql(sql)
        if isinstance(res, str):
            return res
        return _render(res, self.preview_rows, total=len(res.rows))

    @tool
    async def submit(self, sql: str) -> str:
        """Submit the final SQL query whose result answers the question; this ends the episode.

        Args:
            sql: One SQL statement (SELECT or WITH ... SELECT).
        """
        res = await self._execute_agent_sql(sql)
        runs = not isinstance(res, str)
        rows = normalize_rows(res.rows) if runs else []
        correct = runs and not res.truncated and results_match(rows, self.gold_rows, ordered=self.ordered)
        parts = {
            "execution": 1.0 if correct else 0.0,
            "syntax": 1.0 if runs else 0.0,
            "schema": schema_linking(sql, self.gold_sql, self._column_names()),
            "overlap": result_overlap(rows, self.gold_rows) if runs else 0.0,
        }
        w = self.weights
        if correct:
            reward = w["execution"]
            self.reach("correct_result")
        else:
            reward = w["syntax"] * parts["syntax"] + w["schema"] * parts["schema"] + w["overlap"] * parts["overlap"]
        self.last_score = {**parts, "reward": reward}
        self.add_info(reward_parts=self.last_score)
        self.finish(reward=reward, success=correct)
        if correct:
            verdict = "Correct: the result matches the expected answer."
        elif not runs:
            verdict = f"Incorrect: the query failed ({res})."
        else:
            verdict = (f"Incorrect: the result ({_shape(rows, res.truncated)}) does not match the expected answer "
                       f"({_shape(self.gold_rows)}).")
        return f"Submitted. {verdict} Reward {reward:.3f}."

    async def _execute_agent_sql(self, sql: str) -> QueryResult | str:
        if not sql.strip():
            raise InvalidActionError("The query is empty: pass one SQL statement in 'sql'.")
        try:
            res = await self.db.query(sql)
        except QueryTimeout as exc:
            self.last = "timeout"
            return f"Error: {exc}. Simplify the query (add filters or LIMIT, avoid cross joins)."
        except QueryError as exc:
            self.last = "error:" + _digest(str(exc))
            return f"Error: {exc}"
        self.reach("valid_query")
        tables, _ = schema_items(sql, self._column_names())
        if self.gold_tables <= tables:
            self.reach("right_tables")
        self.last = "rows:" + _digest(repr((len(res.columns), normalize_rows(res.rows), res.truncated)))
        return res

    def on_text(self, text: str) -> ToolCall | None:
        """A bare SQL query in the response runs as ``run_query``."""
        m = _SQL_TEXT.match(text)
        return ToolCall(name="run_query", arguments={"sql": m.group(1).strip()}) if m else None

    # ----- state -----------------------------------------------------------------------------
    def state_key(self) -> str:
        """What the agent has learned and done: tables listed and described, the last result."""
        return (f"db={self._db_id}|listed={int(self.listed)}|described={','.join(sorted(self.described))}"
                f"|last={self.last}|done={int(self.done)}")

    def snapshot(self) -> dict[str, Any]:
        return {**self._base_snapshot(), "listed": self.listed, "described": sorted(self.described),
                "last": self.last, "last_score": dict(self.last_score) if self.last_score else None,
                "task": self.task, "db": self._db_id}

    def restore(self, snapshot: dict[str, Any]) -> None:
        if snapshot["db"] != self._db_id or snapshot["task"].id != self.task.id:
            raise ValueError(f"snapshot is of task {snapshot['task'].id!r}; reset to that task before restoring it")
        self._base_restore(snapshot)
        self.listed, self.described = snapshot["listed"], set(snapshot["described"])
        self.last, self.last_score = snapshot["last"], snapshot["last_score"]

    # ----- scripted policies ------------------------------------------------------------------
    def expert_action(self) -> ToolCall:
        """List the tables, describe the ones the gold query needs, then submit the gold query."""
        if not self.listed:
            return ToolCall(name="list_tables")
        for table in self.schema:
            if table.lower() in self.gold_tables and table.lower() not in self.described:
                return ToolCall(name="describe_table", arguments={"name": table})
        return ToolCall(name="submit", arguments={"sql": self.gold_sql})

    def random_action(self, rng: random.Random) -> ToolCall:
        """A random exploration step; a random query is submitted one time in ten."""
        tables = list(self.schema)
        table = rng.choice(tables)
        cols = [c.name for c in self.schema[table]]
        queries = [f"SELECT * FROM {table} LIMIT 5", f"SELECT COUNT(*) FROM {table}",
                   f"SELECT {rng.choice(cols)} FROM {table}", f"SELECT {rng.choice(cols)}, COUNT(*) FROM {table} "
                   f"GROUP BY {cols[0]}", f"SELECT * FROM {table} WHERE"]
        kind = rng.choices(["list", "describe", "query", "submit"], [1, 3, 5, 1])[0]
        if kind == "list":
            return ToolCall(name="list_tables")
        if kind == "describe":
            return ToolCall(name="describe_table", arguments={"name": table if rng.random() < 0.9 else "nonexistent"})
        return ToolCall(name="run_query" if kind == "query" else "submit", arguments={"sql": rng.choice(queries)})

    # ----- lifecycle -------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the database connection."""
        if self._db is not None:
            await self._db.aclose()
            self._db = None
        await super().aclose()


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.10g}"
    if isinstance(v, Decimal):
        return f"{v.normalize():f}" if v == v.to_integral() else str(v)
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _render(res: QueryResult, limit: int, *, total: int | None) -> str:
    header = " | ".join(res.columns)
    body = [" | ".join(_cell(v) for v in row) for row in res.rows[:limit]]
    if total is None:
        return "\n".join([header, *body]) if body else f"{header}\n(no rows)"
    if total == 0:
        return f"0 rows.\n{header}"
    count = f"more than {total}" if res.truncated else str(total)
    shown = f" (showing the first {min(limit, total)})" if res.truncated or total > limit else ""
    return "\n".join([f"{count} row{'s' if count != '1' else ''}{shown}:", header, *body])


def _shape(rows: list[tuple], more: bool = False) -> str:
    """``12 rows of 3 columns``: how a result differs at a glance (``more than`` a cut-off result)."""
    columns = len(rows[0]) if rows else 0
    count = f"more than {len(rows)}" if more else str(len(rows))
    return (f"{count} row{'' if count == '1' else 's'}" + (f" of {columns} column{'' if columns == 1 else 's'}"
                                                           if rows else ""))
