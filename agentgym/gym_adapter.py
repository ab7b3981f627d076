"""Every agentgym environment as a ``gymnasium.Env`` with text observation and action spaces.

Each registered environment is also registered with Gymnasium as ``agentgym/<id>``, so
``gymnasium.make("agentgym/household-v0", suite="test-seen")`` works (see
:mod:`agentgym._gym_hook` for how that happens without importing Gymnasium eagerly).
"""

from __future__ import annotations

import asyncio
import numbers
import string
import threading
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from agentgym import registry
from agentgym.env import first_observation
from agentgym.errors import EnvironmentClosedError
from agentgym.types import Task, ToolCall

MAX_OBSERVATION_CHARS = 100_000
MAX_ACTION_CHARS = 8_192


class AnyText(spaces.Text):
    """Text of any characters (``spaces.Text`` holds a finite character set; observations such as
    "Café de Flore" must pass unchanged). Samples are drawn from ASCII's printable characters."""

    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None) -> None:
        super().__init__(max_length=max_length, min_length=min_length, charset=string.printable, seed=seed)

    def contains(self, x: Any) -> bool:
        """Whether ``x`` is a string of an allowed length."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"AnyText({self.min_length}, {self.max_length})"


class _LoopThread:
    """A private event loop on a daemon thread, so the adapter works inside running loops too."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="agentgym-gym", daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class AgentGymEnv(gym.Env):
    """A Gymnasium view of an agentgym environment.

    Observations are the environment's text, the first one after the task's prompt (as the rollout
    engine shows them; at most ``MAX_OBSERVATION_CHARS``); actions are model text (or a tool call in any
    format :mod:`agentgym.parsing` reads). ``reset(seed=...)`` picks a task of ``suite`` with the
    seeded generator, or the task at ``options["task_index"]``. ``info`` carries the task id,
    the step's validity, milestones and state key.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, env_id: str, suite: str = "train", tasks: list[Task] | None = None,
                 render_mode: str | None = None, **env_kwargs: Any) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.env_id = env_id
        self.render_mode = render_mode
        self.tasks = tasks if tasks is not None else registry.load_tasks(env_id, suite)
        if not self.tasks:
            raise ValueError(f"no tasks to run for {env_id!r} (suite {suite!r} is empty)")
        self.observation_space = AnyText(MAX_OBSERVATION_CHARS)
        self.action_space = AnyText(MAX_ACTION_CHARS)
        self._runner = _LoopThread()
        self._env = registry.make(env_id, **env_kwargs)
        self._last = ""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode on a task of the suite; returns (observation, info)."""
        super().reset(seed=seed)
        index = (options or {}).get("task_index")
        if index is None:
            index = int(self.np_random.integers(len(self.tasks)))
        elif isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < len(self.tasks):
            raise ValueError(f"options['task_index'] must be an integer in [0, {len(self.tasks)}), got {index!r}")
        index = int(index)  # a numpy integer too
        task = self.tasks[index]
        observation = first_observation(task, self._running().run(self._env.reset(task)))  # as the runner shows it
        self._last = observation[:MAX_OBSERVATION_CHARS]
        info = {"task_id": task.id, "task_index": index, "state_key": self._state_key()}
        if self._env.agents:  # a multi-agent environment: who acts next
            info["agent"] = self._env.current_agent()
        return self._last, info

    def step(self, action: str | ToolCall) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Act; returns (observation, reward, terminated, truncated, info)."""
        result = self._running().run(self._env.step(action))
        self._last = result.observation[:MAX_OBSERVATION_CHARS]
        info = {"valid": result.valid, "milestones": result.milestones, "state_key": result.state_key, **result.info}
        if self._env.agents and not (result.terminated or result.truncated):
            info["agent"] = self._env.current_agent()  # who acts next
        return self._last, float(result.reward), result.terminated, result.truncated, info

    @property
    def agent_env(self) -> Any:
        """The wrapped agentgym environment (for its expert, snapshots and state keys)."""
        return self._env

    def render(self) -> str | None:
        """The last observation (``ansi`` mode)."""
        return self._last if self.render_mode == "ansi" else None

    def close(self) -> None:
        """Close the wrapped environment and its event loop."""
        if getattr(self, "_runner", None) is None:
            return
        self._runner.run(self._env.aclose())
        self._runner.close()
        self._runner = None  # type: ignore[assignment]

    def _running(self) -> "_LoopThread":
        if self._runner is None:
            raise EnvironmentClosedError(f"this {self.env_id} Gymnasium environment is closed; make a new one")
        return self._runner

    def _state_key(self) -> str | None:
        return self._env._current_state_key()
