"""SQL: text-to-SQL over real databases with execution rewards (``sql-v0``).

The agent answers a natural-language question about a relational database with four tools:
``list_tables``, ``describe_table(name)``, ``run_query(sql)`` (a bounded preview of the rows, or
the database's error message) and ``submit(sql)`` (ends the episode). Queries run read-only with
a time limit and a row limit (:mod:`agentgym.tools.sql`).

    async with agentgym.make("sql-v0") as env:                      # SQLite, built on first use
        ...
    async with agentgym.make("sql-v0", backend="postgres", dsn=dsn) as env:   # PostgreSQL
        ...

Suites (``agentgym.load_tasks("sql-v0", suite)``): ``train`` (shop, university, hospital),
``test-seen`` (the same schemas, new databases), ``test`` (flights and library: schemas never
seen in train). ``python -m agentgym.tasks.sql load-postgres --dsn DSN`` loads them into a server.
"""

from agentgym.environments.sql.env import MILESTONES, SQLEnv

__all__ = ["MILESTONES", "SQLEnv"]
