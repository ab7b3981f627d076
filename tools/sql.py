"""Read-only SQL execution for SQLite and PostgreSQL, with a time limit and a row limit.

Two back ends share one small async interface, :class:`ReadOnlyDatabase`:

- :class:`SQLiteDatabase` opens the file with a ``mode=ro`` URI, allows only reads through a
  sqlite3 authorizer (no writes, ``ATTACH``, ``PRAGMA``, transactions or ``load_extension``),
  sets ``query_only``, caps attached databases and value sizes, and stops a statement that runs
  past its time limit with a progress handler.
- :class:`PostgresDatabase` connects as a read-only role and runs every statement in a
  ``READ ONLY`` transaction with ``statement_timeout``, through a server-side cursor so a huge
  result never reaches the client; the transaction is always rolled back.

Rows are fetched up to ``max_rows``; more rows set :attr:`QueryResult.truncated`. A result larger
than ``max_bytes`` (roughly, text and blob lengths) is refused, so a query of huge values cannot
exhaust memory. Errors from the
database come back as :class:`QueryError` carrying the database's own message (what an agent
should see); a statement stopped by the time limit raises :class:`QueryTimeout`.

:class:`LocalPostgres` starts a throwaway PostgreSQL server on 127.0.0.1 (tests, benchmarks).
Blocking driver calls run in a worker thread, so the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentgym.errors import AgentGymError, EnvironmentClosedError

__all__ = [
    "Column",
    "LocalPostgres",
    "PostgresDatabase",
    "PostgresUnavailable",
    "QueryError",
    "QueryResult",
    "QueryTimeout",
    "ReadOnlyDatabase",
    "SQLiteDatabase",
]

DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_ROWS = 1000
DEFAULT_MAX_BYTES = 8_000_000


class QueryError(AgentGymError, RuntimeError):
    """A statement the database refused or failed to run; ``str()`` is the database's message."""


class QueryTimeout(QueryError, TimeoutError):
    """A statement stopped because it ran past the time limit."""


class PostgresUnavailable(AgentGymError, RuntimeError):
    """A local PostgreSQL server that cannot be started (binaries missing, no unprivileged user)."""


@dataclass(frozen=True)
class Column:
    """One column of a table as the database declares it."""

    name: str
    type: str
    nullable: bool = True
    primary_key: bool = False
    references: str | None = None  # "table.column" of a foreign key


@dataclass(frozen=True)
class QueryResult:
    """The rows a query returned, at most ``max_rows`` of them (``truncated`` when there were more)."""

    columns: tuple[str, ...]
    rows: list[tuple]
    truncated: bool
    elapsed: float


class ReadOnlyDatabase:
    """The shared interface: list tables, describe one, run a read-only query.

    Every method is a coroutine and raises :class:`~agentgym.errors.EnvironmentClosedError` after
    :meth:`aclose`. ``timeout`` (seconds) and ``max_rows`` are the defaults each query can lower
    or raise.
    """

    dialect: str = ""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, max_rows: int = DEFAULT_MAX_ROWS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_rows <= 0:
            raise ValueError(f"max_rows must be positive, got {max_rows}")
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.timeout, self.max_rows, self.max_bytes = float(timeout), int(max_rows), int(max_bytes)
        self._lock = threading.Lock()
        self._closed = False

    # -- public API --------------------------------------------------------------------------
    async def tables(self) -> list[str]:
        """Names of the tables, sorted."""
        return await self._call(self._tables)

    async def describe(self, table: str) -> list[Column]:
        """The columns of ``table``; an unknown table raises :class:`QueryError` naming the tables."""
        return await self._call(self._describe, table)

    async def query(self, sql: str, *, timeout: float | None = None, max_rows: int | None = None) -> QueryResult:
        """Run one read-only statement and return its first rows.

        Raises :class:`QueryError` with the database's message when the statement is refused or
        fails, and :class:`QueryTimeout` when it runs past ``timeout`` seconds.
        """
        return await self._call(self._query, sql, timeout or self.timeout, max_rows or self.max_rows)

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` has run."""
        return self._closed

    async def aclose(self) -> None:
        """Close the connection; further use raises EnvironmentClosedError."""
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self._locked, self._close)

    async def __aenter__(self) -> "ReadOnlyDatabase":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- plumbing ------------------------------------------------------------------------------
    async def _call(self, fn: Any, *args: Any) -> Any:
        if self._closed:
            raise EnvironmentClosedError(f"{type(self).__name__} is closed")
        return await asyncio.to_thread(self._locked, fn, *args)

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            return fn(*args)

    def _fetch(self, fetchmany: Any, max_rows: int, first_batch: int) -> list[tuple]:
        """Up to ``max_rows + 1`` rows, in batches sized so one batch stays well under max_bytes."""
        rows: list[tuple] = []
        size, batch = 0, first_batch
        while len(rows) <= max_rows:
            chunk = fetchmany(min(batch, max_rows + 1 - len(rows)))
            if not chunk:
                break
            for row in chunk:
                size += 16 + sum(len(v) if isinstance(v, (str, bytes, bytearray, memoryview)) else 8 for v in row)
            rows.extend(chunk)
            if size > self.max_bytes:
                raise QueryError(f"the result is larger than {self.max_bytes} bytes; select fewer rows or "
                                 "smaller values")
            batch = max(1, min(1000, self.max_bytes // 8 // max(1, size // len(rows))))
        return rows

    def _unknown_table(self, table: str, known: list[str]) -> QueryError:
        return QueryError(f"no such table: {table!r}. Tables: {', '.join(known) or '(none)'}")

    def _tables(self) -> list[str]:
        raise NotImplementedError

    def _describe(self, table: str) -> list[Column]:
        raise NotImplementedError

    def _query(self, sql: str, timeout: float, max_rows: int) -> QueryResult:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


# ----- SQLite ---------------------------------------------------------------------------------
_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_ACTIONS = ("CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER CREATE_TEMP_VIEW "
            "CREATE_TRIGGER CREATE_VIEW DELETE DROP_INDEX DROP_TABLE DROP_TEMP_INDEX DROP_TEMP_TABLE "
            "DROP_TEMP_TRIGGER DROP_TEMP_VIEW DROP_TRIGGER DROP_VIEW INSERT PRAGMA READ SELECT TRANSACTION UPDATE "
            "ATTACH DETACH ALTER_TABLE REINDEX ANALYZE CREATE_VTABLE DROP_VTABLE FUNCTION SAVEPOINT RECURSIVE")
_ACTION_NAMES = {getattr(sqlite3, f"SQLITE_{n}"): n.lower().replace("_", " ")
                 for n in _ACTIONS.split() if hasattr(sqlite3, f"SQLITE_{n}")}


class SQLiteDatabase(ReadOnlyDatabase):
    """A SQLite file opened read-only; queries are checked by an authorizer and time-limited.

    Args:
        path: The database file (must exist; it is never created or written).
        timeout: Default statement time limit in seconds.
        max_rows: Default number of rows fetched per query.
        max_bytes: Largest result accepted (approximate size of text and blobs).
    """

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike, *, timeout: float = DEFAULT_TIMEOUT,
                 max_rows: int = DEFAULT_MAX_ROWS, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__(timeout=timeout, max_rows=max_rows, max_bytes=max_bytes)
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"SQLite database {str(self.path)!r} does not exist")
        uri = f"file:{self.path.resolve().as_posix()}?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA query_only = ON")
        self._conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        self._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, min(1_000_000, self.max_bytes))
        self._conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 100_000)
        if hasattr(self._conn, "enable_load_extension"):
            self._conn.enable_load_extension(False)
        self._denied: str | None = None
        self._deadline = 0.0
        self._conn.set_authorizer(self._authorize)
        self._conn.set_progress_handler(self._progress, 2000)

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
        if action in _ALLOWED_ACTIONS and not (action == sqlite3.SQLITE_FUNCTION
                                               and (arg2 or "").lower() in _DENIED_FUNCTIONS):
            return sqlite3.SQLITE_OK
        what = _ACTION_NAMES.get(action, f"action {action}")
        target = arg2 if action == sqlite3.SQLITE_FUNCTION else arg1
        self._denied = f"{what} {target}".strip() if target else what
        return sqlite3.SQLITE_DENY

    def _progress(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def _tables(self) -> list[str]:
        return [r[0] for r in self._trusted(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]

    def _describe(self, table: str) -> list[Column]:
        known = self._tables()
        match = next((t for t in known if t.lower() == table.strip().lower()), None)
        if match is None:
            raise self._unknown_table(table, known)
        quoted = '"' + match.replace('"', '""') + '"'
        fks = {r[3]: f"{r[2]}.{r[4]}" for r in self._trusted(f"PRAGMA foreign_key_list({quoted})")}
        return [Column(name=r[1], type=r[2] or "", nullable=not r[3] and not r[5], primary_key=bool(r[5]),
                       references=fks.get(r[1]))
                for r in self._trusted(f"PRAGMA table_info({quoted})")]

    def _trusted(self, sql: str) -> list[tuple]:
        """Our own fixed introspection statements, run without the authorizer."""
        self._conn.set_authorizer(None)
        self._deadline = time.monotonic() + 30.0
        try:
            return self._conn.execute(sql).fetchall()
        finally:
            self._conn.set_authorizer(self._authorize)

    def _query(self, sql: str, timeout: float, max_rows: int) -> QueryResult:
        start = time.monotonic()
        self._deadline = start + timeout
        self._denied = None
        cur = None
        try:
            cur = self._conn.execute(sql)
            rows = self._fetch(cur.fetchmany, max_rows, 10)
        except sqlite3.Error as exc:
            msg = str(exc)
            if self._conn.in_transaction:
                self._conn.rollback()
            if msg == "interrupted" and time.monotonic() > self._deadline:
                raise QueryTimeout(f"query stopped: it ran longer than the {timeout:g} s time limit") from None
            if self._denied and "not authorized" in msg:
                msg = f"not authorized: {self._denied} (the database is read-only; only SELECT queries run)"
            raise QueryError(msg) from None
        except (ValueError, OverflowError, MemoryError) as exc:
            raise QueryError(str(exc)) from None
        finally:
            if cur is not None:
                cur.close()
        columns = tuple(d[0] for d in cur.description or ())
        return QueryResult(columns, rows[:max_rows], len(rows) > max_rows, time.monotonic() - start)

    def _close(self) -> None:
        self._conn.close()


# ----- PostgreSQL -----------------------------------------------------------------------------
def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("the PostgreSQL back end needs psycopg: pip install 'psycopg[binary]>=3.1'") from exc
    return psycopg


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FIRST_WORD = re.compile(r"[A-Za-z]+")
_READ_STATEMENTS = {"select", "with", "values", "table"}


class PostgresDatabase(ReadOnlyDatabase):
    """One schema of a PostgreSQL database, queried in read-only transactions.

    Connect with a role that has only ``SELECT`` privileges (see
    :func:`agentgym.tasks.sql.load_postgres`); the read-only transaction and the time limit are
    enforced here as well. The connection opens on first use. ``schema`` can be switched between
    queries, so one connection serves every database of a suite.

    Args:
        dsn: A libpq connection string or URL.
        schema: The schema whose tables the agent sees (the ``search_path``).
        timeout: Default statement time limit in seconds.
        max_rows: Default number of rows fetched per query.
        max_bytes: Largest result accepted (approximate size of text and blobs).
    """

    dialect = "postgres"

    def __init__(self, dsn: str, schema: str = "public", *, timeout: float = DEFAULT_TIMEOUT,
                 max_rows: int = DEFAULT_MAX_ROWS, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__(timeout=timeout, max_rows=max_rows, max_bytes=max_bytes)
        self.dsn = dsn
        self.schema = schema
        self._conn: Any = None
        self._n = 0

    @property
    def schema(self) -> str:
        """The schema queries run in."""
        return self._schema

    @schema.setter
    def schema(self, value: str) -> None:
        if not _IDENT.match(value):
            raise ValueError(f"schema must be a plain identifier, got {value!r}")
        self._schema = value

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            psycopg = _psycopg()
            try:
                self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise QueryError(f"cannot connect to PostgreSQL: {str(exc).strip()}") from None
        return self._conn

    def _run(self, sql: str, params: Any, timeout: float, max_rows: int, server_side: bool) -> QueryResult:
        psycopg = _psycopg()
        conn = self._connection()
        start = time.monotonic()
        try:
            with conn.transaction(force_rollback=True):
                with conn.cursor() as setup:
                    setup.execute("SET TRANSACTION READ ONLY")
                    setup.execute("SELECT set_config('statement_timeout', %s, true), "
                                  "set_config('search_path', %s, true)",
                                  (f"{max(1, int(timeout * 1000))}ms", self._schema))
                if server_side:
                    self._n += 1
                    cur = conn.cursor(name=f"agentgym_q{self._n}")
                else:
                    cur = conn.cursor()
                with cur:
                    cur.execute(sql, params)
                    rows = self._fetch(cur.fetchmany, max_rows, 1 if server_side else max_rows + 1)
                    columns = tuple(d.name for d in cur.description or ())
        except psycopg.errors.QueryCanceled:
            raise QueryTimeout(f"query stopped: it ran longer than the {timeout:g} s time limit") from None
        except psycopg.Error as exc:
            if conn.closed or conn.broken:  # reconnect on the next query
                conn.close()
                self._conn = None
            diag = getattr(exc, "diag", None)
            msg = (diag.message_primary if diag is not None and diag.message_primary else str(exc)).strip()
            raise QueryError(msg) from None
        return QueryResult(columns, rows[:max_rows], len(rows) > max_rows, time.monotonic() - start)

    def _tables(self) -> list[str]:
        res = self._run("SELECT table_name::text FROM information_schema.tables WHERE table_schema = %s "
                        "AND table_type = 'BASE TABLE' ORDER BY 1", (self._schema,), 10.0, 10_000, False)
        return [r[0] for r in res.rows]

    def _describe(self, table: str) -> list[Column]:
        known = self._tables()
        match = next((t for t in known if t.lower() == table.strip().lower()), None)
        if match is None:
            raise self._unknown_table(table, known)
        cols = self._run(
            "SELECT column_name::text, data_type::text, numeric_precision, numeric_scale, is_nullable = 'YES' "
            "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (self._schema, match), 10.0, 10_000, False).rows
        keys = self._run(
            "SELECT a.attname::text, c.contype::text, rt.relname::text, ra.attname::text "
            "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = c.conkey[1] "
            "LEFT JOIN pg_class rt ON rt.oid = c.confrelid "
            "LEFT JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1] "
            "WHERE n.nspname = %s AND t.relname = %s AND c.contype IN ('p', 'f')",
            (self._schema, match), 10.0, 10_000, False).rows
        pks = {r[0] for r in keys if r[1] == "p"}
        fks = {r[0]: f"{r[2]}.{r[3]}" for r in keys if r[1] == "f"}
        out = []
        for name, dtype, prec, scale, nullable in cols:
            if dtype == "numeric" and prec is not None:
                dtype = f"numeric({prec},{scale})"
            out.append(Column(name=name, type=dtype, nullable=bool(nullable) and name not in pks,
                              primary_key=name in pks, references=fks.get(name)))
        return out

    def _query(self, sql: str, timeout: float, max_rows: int) -> QueryResult:
        try:
            return self._run_agent_sql(sql, timeout, max_rows)
        except QueryTimeout:
            raise
        except QueryError as exc:
            # The statement runs inside DECLARE ... CURSOR FOR, so a write reads as a syntax error.
            first = (_FIRST_WORD.findall(sql) or [""])[0].lower()
            if str(exc).startswith("syntax error") and first not in _READ_STATEMENTS:
                raise QueryError(f"{exc} (the database is read-only; only SELECT queries run)") from None
            raise

    def _run_agent_sql(self, sql: str, timeout: float, max_rows: int) -> QueryResult:
        # No parameters: psycopg then sends the text as is (a literal '%' needs no escaping), and
        # the extended protocol it uses refuses several statements in one string.
        return self._run(sql.strip().rstrip(";"), None, timeout, max_rows, True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()


# ----- a throwaway local PostgreSQL server ------------------------------------------------------
def _pg_bindir() -> Path | None:
    env = os.environ.get("AGENTGYM_PG_BINDIR")
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """A private PostgreSQL server on 127.0.0.1, in a temporary directory, for tests and benchmarks.

    ``initdb`` refuses to run as root, so as root the server runs as ``user`` (default: the
    ``postgres`` system account, else ``nobody``); otherwise as the current user. Trust
    authentication, no fsync: never use it for real data. :meth:`start` raises
    :class:`PostgresUnavailable` with the reason when it cannot start; :meth:`stop` (or
    :meth:`aclose`, or leaving the ``with``/``async with`` block) stops it and deletes its files.

    Attributes after start: ``port``, ``superuser``, :meth:`dsn`.
    """

    def __init__(self, *, user: str | None = None, superuser: str = "agentgym") -> None:
        self.superuser = superuser
        self._user = user
        self.port: int | None = None
        self._dir: Path | None = None
        self._bindir: Path | None = None
        self._run_as: list[str] = []

    def dsn(self, user: str | None = None, dbname: str = "postgres") -> str:
        """The connection string for ``user`` (default: the superuser)."""
        if self.port is None:
            raise RuntimeError("the server is not running; call start() first")
        return f"host=127.0.0.1 port={self.port} user={user or self.superuser} dbname={dbname}"

    def _cmd(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([*self._run_as, *args], capture_output=True, text=True, timeout=timeout,
                                  check=True, cwd=self._dir)
        except subprocess.CalledProcessError as exc:
            raise PostgresUnavailable(f"{Path(args[0]).name} failed: {(exc.stderr or exc.stdout).strip()}") from None
        except subprocess.TimeoutExpired:
            raise PostgresUnavailable(f"{Path(args[0]).name} did not finish in {timeout:g} s") from None

    def start(self) -> "LocalPostgres":
        """Create the cluster and start the server; returns self."""
        self._bindir = _pg_bindir()
        if self._bindir is None:
            raise PostgresUnavailable("PostgreSQL binaries not found (apt-get install postgresql, "
                                      "or set AGENTGYM_PG_BINDIR to the folder holding initdb and pg_ctl)")
        owner = None
        if os.geteuid() == 0:
            for name in [self._user] if self._user else ["postgres", "nobody"]:
                try:
                    owner = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            if owner is None:
                raise PostgresUnavailable("running as root and no unprivileged user to run PostgreSQL as "
                                          f"(tried {self._user or 'postgres, nobody'}); create one with useradd")
            runuser = shutil.which("runuser") or shutil.which("su")
            if runuser is None:
                raise PostgresUnavailable("running as root and neither runuser nor su is available")
            self._run_as = [runuser, "-u", owner.pw_name, "--"] if runuser.endswith("runuser") else []
            if not self._run_as:
                raise PostgresUnavailable("running as root needs runuser (util-linux) to drop privileges")
        self._dir = Path(tempfile.mkdtemp(prefix="agentgym-pg-"))
        if owner is not None:
            os.chown(self._dir, owner.pw_uid, owner.pw_gid)
        data = self._dir / "data"
        try:
            self._cmd(str(self._bindir / "initdb"), "-D", str(data), "-U", self.superuser, "--auth=trust",
                      "--no-sync", "--encoding=UTF8", "--locale=C")
            self.port = _free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self._dir} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            self._cmd(str(self._bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(self._dir / "log"),
                      "-w", "-t", "60", "start", timeout=90)
        except BaseException:
            self.port = None
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory; safe to call twice."""
        if self._dir is None:
            return
        try:
            if self.port is not None and self._bindir is not None:
                try:
                    self._cmd(str(self._bindir / "pg_ctl"), "-D", str(self._dir / "data"), "-m", "fast", "-w",
                              "stop", timeout=60)
                except PostgresUnavailable:
                    pass
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir, self.port = None, None

    async def aclose(self) -> None:
        """Stop the server (see :meth:`stop`)."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> "LocalPostgres":
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
