"""Regenerate the household task suites: ``python -m agentgym.tasks.household.generate``.

Writes ``<suite>.jsonl`` beside this file (or into ``--out``); ``--check`` only compares a fresh
generation with the committed files and exits 1 when they differ. The generator itself lives in
:mod:`agentgym.environments.household.generation` (the environment draws tasks with it too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agentgym.environments.household.generation import GENERATOR_SEED, generate_suites, suite_text
from agentgym.tasks import write_generated

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write the suites into")
    parser.add_argument("--seed", type=int, default=GENERATOR_SEED, help="generator seed")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = parser.parse_args(argv)
    files = {f"{name}.jsonl": suite_text(tasks) for name, tasks in generate_suites(args.seed).items()}
    return write_generated(files, args.out, check=args.check, command="python -m agentgym.tasks.household.generate")


if __name__ == "__main__":
    sys.exit(main())
