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

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write the suites into")
    parser.add_argument("--seed", type=int, default=GENERATOR_SEED, help="generator seed")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name, tasks in generate_suites(args.seed).items():
        path = args.out / f"{name}.jsonl"
        text = suite_text(tasks)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"{path}: {len(tasks)} tasks, {len(text.encode()) / 1e6:.2f} MB")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python -m agentgym.tasks.household.generate", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
