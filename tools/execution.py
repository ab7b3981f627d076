"""Python and shell execution for agents: one episode's sandbox session, its results shown as observations.

Environments compose it in two ways:

- :class:`ExecutionTools`, a mixin that gives an environment the tools ``python(code)`` and
  ``bash(command)`` over ``self.execution``::

      class Analyst(ExecutionTools, ag.Environment):
          def __init__(self) -> None:
              super().__init__()
              self.execution = Execution("process", timeout=10)

          async def reset(self, task: ag.Task) -> str:
              await self.execution.restart(files={"sales.csv": task.data["csv"]})  # a fresh work directory
              return "How many rows does sales.csv have? Answer with answer(n)."

          @ag.tool
          async def answer(self, n: int) -> str:
              '''Give the number of rows.'''
              self.finish(reward=float(n == len(self.task.data["csv"].splitlines())))
              return "done"

  Each episode gets a new work directory: the mixin restarts the execution when an episode begins
  (``restart`` in ``reset`` is needed only to put files there). Its ``aclose`` closes the execution
  (and the sandbox, when the execution made it).
- :class:`Execution` alone, under the environment's own tool names (``code-v0``'s ``run_python``).

Calls of one episode share a work directory (files persist between them); :meth:`Execution.restart`
starts the next episode in a new, empty one. Each call runs under the sandbox's limits (time, CPU,
memory, output) and comes back as an :class:`~agentgym.sandboxes.ExecResult`; :meth:`Execution.show`
turns it into what the agent reads: exit code, stdout and stderr (each clipped), and why the sandbox
stopped the run, if it did.
"""

from __future__ import annotations

import hashlib
from typing import Any

from agentgym.env import Environment, tool
from agentgym.errors import InvalidActionError
from agentgym.sandboxes import ExecResult, make

__all__ = ["Execution", "ExecutionTools", "clip"]

MAX_SHOWN = 4000


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters, saying how many more there were."""
    return text if len(text) <= limit else text[:limit] + f"\n... [{len(text) - limit} more characters]"


class Execution:
    """An episode's sandbox session for agent code, with the sandbox behind it.

    ``sandbox`` is ``"process"`` (bubblewrap, the default), ``"docker"``, or a
    :class:`~agentgym.sandboxes.Sandbox` to share (not closed here); ``sandbox_options`` go to
    :func:`agentgym.sandboxes.make`. ``timeout`` bounds each call's wall-clock seconds;
    ``max_shown`` caps the characters of stdout and of stderr that :meth:`show` returns.
    The sandbox is built at once (it starts no process before its first run) and is public as
    ``sandbox`` for one-shot runs apart from the session's files (``code-v0``'s judge); the session
    starts with the first call.
    """

    def __init__(self, sandbox: Any = "process", *, timeout: float = 20.0, max_shown: int = MAX_SHOWN,
                 sandbox_options: dict[str, Any] | None = None) -> None:
        if timeout <= 0 or max_shown <= 0:
            raise ValueError(f"timeout and max_shown must be positive, got {timeout} and {max_shown}")
        if not isinstance(sandbox, str) and sandbox_options:
            raise ValueError("sandbox_options build a sandbox by kind; this one is built already")
        if "timeout" in (sandbox_options or {}):  # every call passes its own: this one would be ignored
            raise ValueError(f"sandbox_options['timeout'] would be overridden by each call's; set the timeout "
                             f"option instead (now {timeout:g} s)")
        self._owns_sandbox = isinstance(sandbox, str)
        self.sandbox: Any = make(sandbox, **(sandbox_options or {})) if isinstance(sandbox, str) else sandbox
        self._session: Any = None
        self._files: dict[str, str | bytes] = {}  # written with the episode's first call
        self.timeout, self.max_shown = timeout, max_shown
        self.last: ExecResult | None = None  # the latest call's
        self._stale = False  # the session is an earlier episode's: the next call starts a new one

    async def restart(self, files: dict[str, str | bytes] | None = None) -> None:
        """Start a new episode: a new session and work directory, with ``files`` (relative path -> content)
        in it from the first call on."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.aclose()
        self._files, self.last, self._stale = dict(files or {}), None, False

    def expire(self) -> None:
        """A new episode began: its first call starts a new session unless :meth:`restart` comes first.
        (:class:`ExecutionTools` calls it, so an environment that never restarts still gets one per episode.)"""
        self._stale, self.last = True, None

    async def python(self, code: str, **limits: Any) -> ExecResult:
        """Run Python source in the session; ``limits`` override the sandbox's per call (``memory_mb``, ...)."""
        return await self._run("run_python", code, limits)

    async def bash(self, command: str, **limits: Any) -> ExecResult:
        """Run a command line with ``bash -c`` in the session."""
        return await self._run("run", ["bash", "-c", command], limits)

    async def _run(self, method: str, payload: Any, limits: dict[str, Any]) -> ExecResult:
        if self._stale:
            await self.restart()
        if self._session is None:
            self._session = self.sandbox.session()
        limits.setdefault("timeout", self.timeout)
        self.last = await getattr(self._session, method)(payload, files=self._files or None, **limits)
        self._files = {}  # written now (kept for the next call when the sandbox could not run)
        return self.last

    def show(self, result: ExecResult) -> str:
        """What the agent reads of a run: exit code, output (clipped) and why the sandbox stopped it."""
        parts = [f"exit code {result.exit_code}"]
        if result.stdout:
            parts.append("stdout:\n" + clip(result.stdout, self.max_shown))
        if result.stderr:
            parts.append("stderr:\n" + clip(result.stderr, self.max_shown))
        if not result.stdout and not result.stderr:
            parts.append("(no output)")
        if result.describe():
            parts.append(result.describe())
        return "\n".join(parts)

    def state(self) -> tuple | None:
        """The latest run's outcome (exit code, limit, a digest of its output), for a ``state_key``."""
        if self.last is None:
            return None
        output = f"{self.last.stdout}\0{self.last.stderr}".encode("utf-8", "replace")
        return self.last.exit_code, self.last.limit, hashlib.sha1(output).hexdigest()[:16]

    async def aclose(self) -> None:
        """Close the session, and the sandbox when this execution built it."""
        try:
            await self.restart()
        finally:
            if self._owns_sandbox:
                await self.sandbox.aclose()


class ExecutionTools:
    """Mixin for an :class:`~agentgym.Environment`: the tools ``python(code)`` and ``bash(command)``.

    The environment sets ``self.execution`` (an :class:`Execution`) in ``__init__`` and lists the mixin
    before ``Environment`` in its bases (so the mixin's ``aclose`` and episode start run). Each episode
    starts in a new work directory; ``self.execution.restart(files=...)`` in ``reset`` puts files there.
    """

    execution: Execution

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        if Environment in mro and mro.index(Environment) < mro.index(ExecutionTools):
            raise TypeError(f"{cls.__name__}: list ExecutionTools before Environment in the bases "
                            f"(class {cls.__name__}(ExecutionTools, ag.Environment)), or its aclose never runs")

    def _begin_episode(self, task: Any) -> None:
        super()._begin_episode(task)  # type: ignore[misc]
        execution = getattr(self, "execution", None)
        if isinstance(execution, Execution):
            execution.expire()

    @tool
    async def python(self, code: str) -> str:
        """Run Python code in the sandbox and return its output (or traceback).

        Args:
            code: Python source; files written to the working directory persist between calls.
        """
        if not code.strip():
            raise InvalidActionError("python needs some code to run")
        execution = self._execution()
        return execution.show(await execution.python(code))

    @tool
    async def bash(self, command: str) -> str:
        """Run a shell command (bash) in the sandbox and return its output.

        Args:
            command: a bash command line, run in the working directory shared with python.
        """
        if not command.strip():
            raise InvalidActionError("bash needs a command to run")
        execution = self._execution()
        return execution.show(await execution.bash(command))

    def _execution(self) -> Execution:
        execution = getattr(self, "execution", None)
        if not isinstance(execution, Execution):
            raise TypeError(f"{type(self).__name__} uses ExecutionTools but has no self.execution; "
                            "set self.execution = Execution(...) in __init__")
        return execution

    async def aclose(self) -> None:
        """Close the execution (and the sandbox it built), then the environment."""
        try:
            execution = getattr(self, "execution", None)
            if isinstance(execution, Execution):
                await execution.aclose()
        finally:
            await super().aclose()  # type: ignore[misc]
