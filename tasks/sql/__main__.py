"""``python -m agentgym.tasks.sql build [--out DIR] [--check]`` | ``load-postgres --dsn DSN``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agentgym.tasks import write_generated
from agentgym.tasks.sql.build import suite_db_ids, suite_files
from agentgym.tasks.sql.databases import READ_ONLY_ROLE, load_postgres


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentgym.tasks.sql", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="regenerate the JSONL suites (beside this module unless --out)")
    build.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder to write the suites into")
    build.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    pg = sub.add_parser("load-postgres", help="load every suite database into a PostgreSQL server")
    pg.add_argument("--dsn", required=True, help="connection string of a superuser")
    pg.add_argument("--role", default=READ_ONLY_ROLE, help="name of the read-only role to create")
    pg.add_argument("--password", default=None, help="password of the read-only role")
    args = parser.parse_args(argv)
    if args.command == "build":
        return write_generated(suite_files(), args.out, check=args.check, command="python -m agentgym.tasks.sql build")
    print(load_postgres(args.dsn, suite_db_ids(), role=args.role, role_password=args.password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
