"""``python -m agentgym.tasks.sql build`` | ``load-postgres --dsn DSN``."""

from __future__ import annotations

import argparse

from agentgym.tasks.sql.build import suite_db_ids, write_suites
from agentgym.tasks.sql.databases import READ_ONLY_ROLE, load_postgres


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agentgym.tasks.sql", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="regenerate the JSONL suites beside this module (tasks/sql/ in a checkout)")
    pg = sub.add_parser("load-postgres", help="load every suite database into a PostgreSQL server")
    pg.add_argument("--dsn", required=True, help="connection string of a superuser")
    pg.add_argument("--role", default=READ_ONLY_ROLE, help="name of the read-only role to create")
    pg.add_argument("--password", default=None, help="password of the read-only role")
    args = parser.parse_args(argv)
    if args.command == "build":
        for name, n in write_suites().items():
            print(f"{name}: {n} tasks")
    else:
        print(load_postgres(args.dsn, suite_db_ids(), role=args.role, role_password=args.password))


if __name__ == "__main__":
    main()
