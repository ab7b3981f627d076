"""Build the SQL databases: SQLite files in a cache directory, and schemas in a PostgreSQL server.

A database id is ``<domain>_<seed>`` (``shop_0``). :func:`sqlite_path` generates the file on
first use from the seed, deterministically, into ``$AGENTGYM_SQL_CACHE`` (default
``~/.cache/agentgym/sql``); concurrent builders write to a temporary file and rename it, so
readers never see a half-written database. :func:`load_postgres` copies the same rows into one
schema per database id and creates the read-only role the environment connects as.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Iterable

from agentgym.tasks.sql.domains import DOMAINS, Domain, ddl

# Bump when a generator changes: files built by an older generator are then rebuilt, not reused.
GENERATOR_VERSION = 1
READ_ONLY_ROLE = "agentgym_sql_ro"
_DB_ID = re.compile(r"^([a-z]+)_(\d+)$")


def parse_db_id(db_id: str) -> tuple[Domain, int]:
    """``shop_3`` -> (the shop domain, 3); anything else raises ValueError naming the domains."""
    m = _DB_ID.match(db_id)
    if not m or m.group(1) not in DOMAINS:
        raise ValueError(f"database ids look like '<domain>_<seed>' with a domain among "
                         f"{', '.join(DOMAINS)}; got {db_id!r}")
    return DOMAINS[m.group(1)], int(m.group(2))


def cache_dir() -> Path:
    """Where SQLite files are built: ``$AGENTGYM_SQL_CACHE`` or ``~/.cache/agentgym/sql``."""
    return Path(os.environ.get("AGENTGYM_SQL_CACHE") or Path.home() / ".cache" / "agentgym" / "sql")


def generate_rows(db_id: str) -> dict[str, list[tuple]]:
    """The rows of every table of ``db_id``, from its seed."""
    domain, seed = parse_db_id(db_id)
    return domain.generate(random.Random(f"agentgym-sql:{domain.name}:{seed}"))


def sqlite_path(db_id: str, directory: str | os.PathLike | None = None) -> Path:
    """The SQLite file of ``db_id``, built first if it is not there yet."""
    domain, _ = parse_db_id(db_id)
    folder = Path(directory) if directory is not None else cache_dir()
    path = folder / f"{db_id}.v{GENERATOR_VERSION}.sqlite"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rows = generate_rows(db_id)
    fd, tmp = tempfile.mkstemp(prefix=f".{db_id}-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        try:
            with conn:
                for table in domain.tables:
                    conn.execute(ddl(table, "sqlite"))
                    marks = ", ".join("?" * len(table.columns))
                    conn.executemany(f"INSERT INTO {table.name} VALUES ({marks})", rows[table.name])
            conn.execute("VACUUM")
        finally:
            conn.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_postgres(admin_dsn: str, db_ids: Iterable[str], *, role: str = READ_ONLY_ROLE,
                  role_password: str | None = None) -> str:
    """Create one schema per database id in the server at ``admin_dsn`` and a read-only role.

    Existing schemas of the same name are replaced. The role may log in, reads every loaded
    schema, writes nothing, and defaults to read-only transactions with a statement timeout and
    a temporary-file cap. Needs a role allowed to create schemas and roles (a superuser).
    Returns the DSN to give :class:`~agentgym.environments.sql.SQLEnv` (``backend="postgres"``).
    """
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    ids = list(db_ids)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        r = sql.Identifier(role)
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(r))
        if role_password is not None:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(r, sql.Literal(role_password)))
        # track_activities off: sessions of the role share it, and pg_stat_activity would otherwise
        # show an agent the queries of its neighbours, gold queries included.
        for setting, value in (("default_transaction_read_only", "on"), ("statement_timeout", "10s"),
                               ("temp_file_limit", "256MB"), ("work_mem", "16MB"), ("track_activities", "off")):
            conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(r, sql.Identifier(setting), sql.Literal(value)))
        dbname = conn.info.dbname
        conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)))
        for db_id in ids:
            domain, _ = parse_db_id(db_id)
            path = sqlite_path(db_id)
            schema = sql.Identifier(db_id)
            with conn.transaction():
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
                conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
                src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    for table in domain.tables:
                        conn.execute(ddl(table, "postgres"))
                        cols = [c.name for c in table.columns]
                        with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                                sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, cols)))) as copy:
                            for row in src.execute(f"SELECT {', '.join(cols)} FROM {table.name}"):
                                copy.write_row(row)
                finally:
                    src.close()
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, r))
                conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, r))
        conn.execute("ANALYZE")
    params: dict[str, Any] = {"user": role}
    if role_password is not None:
        params["password"] = role_password
    return make_conninfo(admin_dsn, **params)
