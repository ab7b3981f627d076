"""code-v0: write a Python function or program from a specification; hidden tests decide the reward."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from agentgym.env import Environment, tool
from agentgym.errors import InvalidActionError
from agentgym.sandboxes import ExecResult, Sandbox
from agentgym.tools.execution import Execution, clip
from agentgym.types import Task, ToolCall

from . import harness

_TOOLS_HELP = ("Tools: run_python(code) runs code in a sandbox and shows its output; run_tests(code) runs your "
               "solution against the public example tests; submit(code) submits your final solution (the "
               "episode ends, hidden tests decide the reward).")

class CodeEnv(Environment):
    """Write code from a specification; reward = fraction of hidden tests passed.

    Tools: ``run_python(code)`` (run anything in the episode's sandbox session; files persist
    between calls), ``run_tests(code)`` (the public examples only) and ``submit(code)`` (ends the
    episode with reward = passed / hidden tests; success when all pass). Tests run in a fresh
    sandbox, apart from the session's files, and the candidate never runs in the process that
    judges it (:mod:`agentgym.environments.code.harness`). Milestones: ``runs``
    (some code ran without error), ``public-tests-pass``, ``half-hidden-pass``.

    Options: ``sandbox`` is ``"process"`` (default), ``"docker"`` or a :class:`Sandbox` instance
    (shared, not closed by the environment); ``sandbox_options`` go to
    :func:`agentgym.sandboxes.make`; ``timeout`` bounds each tool call (seconds) and ``test_timeout``
    each test. ``state_key`` is the behaviour of the code run so far (outputs and test outcomes),
    never the turn count.
    """

    def __init__(self, *, sandbox: str | Sandbox = "process", sandbox_options: dict[str, Any] | None = None,
                 timeout: float = 20.0, test_timeout: float = 2.0) -> None:
        super().__init__()
        if timeout <= 0 or test_timeout <= 0:
            raise ValueError(f"timeout and test_timeout must be positive, got {timeout} and {test_timeout}")
        self.execution = Execution(sandbox, timeout=timeout, sandbox_options=sandbox_options)
        self.timeout, self.test_timeout = timeout, test_timeout
        self._public: tuple | None = None
        self._hidden: tuple | None = None

    async def reset(self, task: Task) -> str:
        for key in ("hidden_tests", "entry_point", "solution"):
            if key not in task.data:
                raise ValueError(f"task {task.id} is not a code-v0 task: its data has no {key!r}")
        await self.execution.restart()
        self._public = self._hidden = None
        return f"{task.prompt}\n\n{_TOOLS_HELP}"

    # ----- tools ----------------------------------------------------------------------------------
    @tool
    async def run_python(self, code: str) -> str:
        """Run Python code in the sandbox and return its output (or traceback).

        Args:
            code: Python source; files written to the working directory persist between calls.
        """
        if not code.strip():
            raise InvalidActionError("run_python needs some code to run")
        result = await self.execution.python(code)
        if result.ok:
            self.reach("runs")
        return self.execution.show(result)

    @tool
    async def run_tests(self, code: str) -> str:
        """Run your solution against the public example tests.

        Args:
            code: the complete solution (the function with any imports it needs, or the program).
        """
        tests = self.task.data.get("public_tests", [])
        report, problem = await self._judge(code, tests)
        if report is None:
            self._public = ("crashed", problem)
            return f"The tests could not run: {problem}"
        if report["load_error"]:
            self._public = ("load-error", _digest(report["load_error"]))
            return f"Your code failed to load: {report['load_error']}"
        self.reach("runs")
        results = report["results"]
        self._public = tuple(r["ok"] for r in results)
        passed = sum(self._public)
        if passed == len(results):
            self.reach("public-tests-pass")
        if not tests:
            return "This task has no public tests; your code loaded without errors."
        lines = [f"Public tests: {passed}/{len(results)} passed."]
        for test, r in zip(tests, results):
            if not r["ok"]:
                lines.append(_describe_failure(test, r))
        return "\n".join(lines)

    @tool
    async def submit(self, code: str) -> str:
        """Submit your final solution; hidden tests decide the reward and the episode ends.

        Args:
            code: the complete solution (the function with any imports it needs, or the program).
        """
        tests = self.task.data["hidden_tests"]
        report, problem = await self._judge(code, tests)
        if report is None or report["load_error"]:
            self._hidden = (0, len(tests))
            self.finish(reward=0.0, success=False)
            why = problem if report is None else f"your code failed to load: {report['load_error']}"
            return f"Submitted: 0/{len(tests)} hidden tests passed ({why}). Reward 0.00."
        self.reach("runs")
        oks = [r["ok"] for r in report["results"]]
        passed = sum(oks)
        self._hidden = tuple(oks)
        reward = passed / len(tests) if tests else 0.0
        if tests and passed * 2 >= len(tests):
            self.reach("half-hidden-pass")
        self.finish(reward=reward, success=bool(tests) and passed == len(tests))
        return f"Submitted: {passed}/{len(tests)} hidden tests passed. Reward {reward:.2f}."

    async def _judge(self, code: str, tests: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
        if not code.strip():
            raise InvalidActionError("the solution is empty; pass the complete code")
        data = self.task.data
        source, private, nonce = harness.job(code, tests, kind=data.get("kind", "function"),
                                             entry_point=data["entry_point"], setup=data.get("test_setup", ""),
                                             per_test=self.test_timeout)
        budget = min(self.timeout + self.test_timeout * (len(tests) + 1), 120.0)
        # a one-shot run: a fresh work directory, not the session's (whose files could shadow modules)
        result: ExecResult = await self.execution.sandbox.run_python(source, stdin=private, timeout=budget,
                                                                     cpu_seconds=budget, max_output_bytes=1 << 20)
        report = harness.parse_report(result.stdout, nonce, len(tests))
        if report is None:
            return None, (result.describe() or f"the test run ended with exit code {result.exit_code}: "
                          f"{clip(result.stderr, 500)}")
        return report, ""

    # ----- state and scripted policies ------------------------------------------------------------
    def state_key(self) -> str:
        """Hash of what the agent's code did: last run's output, public and hidden test outcomes."""
        return _digest(json.dumps([self.execution.state(), self._public, self._hidden], default=str))

    def expert_action(self) -> ToolCall:
        """Run the reference solution's public tests, then submit it."""
        solution = self.task.data["solution"]
        if self._public is None:
            return ToolCall(name="run_tests", arguments={"code": solution})
        return ToolCall(name="submit", arguments={"code": solution})

    def random_action(self, rng: random.Random) -> ToolCall:
        """A random tool call with a random candidate: a broken, partial or stub version of the solution."""
        solution = self.task.data["solution"]
        lines = solution.splitlines()
        entry = self.task.data["entry_point"]
        candidates = [
            "print('hello')",
            f"def {entry}(*args):\n    return None\n",
            "\n".join(line for i, line in enumerate(lines) if i != rng.randrange(len(lines))) if lines else "pass",
            solution.replace("+", "-", 1),
            "raise ValueError('not done')",
            "while True:\n    pass\n",
        ]
        name = rng.choice(["run_python", "run_tests", "run_tests", "submit"])
        return ToolCall(name=name, arguments={"code": rng.choice(candidates)})

    # ----- lifecycle ------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the episode's sandbox session and, if this environment made it, the sandbox."""
        try:
            await self.execution.aclose()
        finally:
            await super().aclose()


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:16]


def _describe_failure(test: dict[str, Any], result: dict[str, Any]) -> str:
    if "stdin" in test:
        return (f"FAILED: input {test['stdin']!r}: expected output {test['stdout']!r}, got {result.get('got', '')!r}"
                + (f" ({result['error']})" if result.get("error") not in (None, "wrong output") else ""))
    line = f"FAILED: {test['code'].splitlines()[0]}"
    if "got" in result:
        line += f"  (left side was {result['got']})"
    elif result.get("error"):
        line += f"  ({result['error']})"
    return line
