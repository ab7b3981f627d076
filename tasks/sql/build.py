"""Build the ``sql-v0`` task suites from the domains and the question templates.

Suites (database ids in brackets):

- ``train``: the train schemas (shop, university, hospital), two databases each (seeds 0, 1).
- ``test-seen``: the same schemas on new data (seed 2): held-out databases, seen schemas.
- ``test``: held-out schemas never shown in train (flights, library), seeds 0 and 1.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from agentgym.tasks import to_jsonl
from agentgym.tasks.sql.databases import parse_db_id, sqlite_path
from agentgym.tasks.sql.domains import HELD_OUT_DOMAINS, TRAIN_DOMAINS
from agentgym.tasks.sql.templates import generate_questions

ENV_ID = "sql-v0"
MAX_TURNS = 12
SUITES: dict[str, tuple[str, list[str], int]] = {
    # name: (task split, database ids, questions per database)
    "train": ("train", [f"{d}_{s}" for d in TRAIN_DOMAINS for s in (0, 1)], 40),
    "test-seen": ("test", [f"{d}_2" for d in TRAIN_DOMAINS], 20),
    "test": ("test", [f"{d}_{s}" for d in HELD_OUT_DOMAINS for s in (0, 1)], 30),
}


def suite_db_ids() -> list[str]:
    """Every database id some suite uses."""
    return sorted({db for _, dbs, _ in SUITES.values() for db in dbs})


def _milestones() -> list[dict]:
    from agentgym.environments.sql.env import MILESTONES

    return [m.model_dump() for m in MILESTONES]


def build_suite(name: str) -> list[dict]:
    """The tasks of suite ``name`` as JSON-ready dicts (deterministic)."""
    split, db_ids, per_db = SUITES[name]
    tasks = []
    for db_id in db_ids:
        domain, seed = parse_db_id(db_id)
        conn = sqlite3.connect(f"file:{sqlite_path(db_id)}?mode=ro", uri=True)
        try:
            rng = random.Random(f"agentgym-sql-questions:{name}:{db_id}")
            for i, q in enumerate(generate_questions(domain, conn, rng, per_db)):
                tasks.append({
                    "id": f"sql-{name}-{db_id}-{i:03d}", "env": ENV_ID, "split": split, "prompt": q.question,
                    "data": {"db": db_id, "domain": domain.name, "seed": seed, "gold": q.sql, "ordered": q.ordered,
                             "difficulty": q.difficulty, "template": q.template, "tables": q.tables},
                    "milestones": _milestones(), "max_turns": MAX_TURNS,
                })
        finally:
            conn.close()
    return tasks


def suite_files() -> dict[str, str]:
    """Every suite as the text of its ``<name>.jsonl`` file."""
    return {f"{name}.jsonl": to_jsonl(build_suite(name)) for name in SUITES}
