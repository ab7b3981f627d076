"""Seeded generator of the SQL databases and task suites.

``python -m agentgym.tasks.sql build`` rewrites the JSONL suites next to this file (``--out DIR``
elsewhere, ``--check`` compares only);
``python -m agentgym.tasks.sql load-postgres --dsn DSN`` loads every database of the suites into
a PostgreSQL server and prints the read-only DSN to give ``SQLEnv(backend="postgres", dsn=...)``.
"""

from agentgym.tasks.sql.databases import cache_dir, load_postgres, parse_db_id, sqlite_path

__all__ = ["cache_dir", "load_postgres", "parse_db_id", "sqlite_path"]
