"""Scripted policies: an environment's own expert and random actions.

They implement :class:`~agentgym.policies.base.EnvPolicy`: instead of a conversation they get the
episode's environment (and its seeded random generator) from the rollout engine, and call the
environment's ``expert_action()`` or ``random_action(rng)`` hook. Use them for tests, for
demonstrations (SFT warm starts) and as baselines.
"""

from __future__ import annotations

import functools
import inspect
import random
from typing import Any

from agentgym.env import Environment
from agentgym.errors import PolicyError
from agentgym.types import ToolCall


class ScriptedPolicy:
    """Calls the environment hook named ``hook`` each turn; ``ExpertPolicy`` and ``RandomPolicy`` fix it."""

    hook: str = ""
    name: str = "scripted"
    uses_rng: bool = True  # False lets the rollout engine skip seeding a generator per episode

    async def act(self, env: Environment, rng: random.Random | None) -> ToolCall | str:
        """The environment's next scripted action: a ToolCall or plain text for ``env.step``."""
        method = getattr(env, self.hook, None)
        if method is None:
            remote = getattr(env, "call_hook", None)  # an environment in another process (RayEnvPool)
            if remote is None:
                raise PolicyError(f"the {self.name} policy needs {type(env).__name__}.{self.hook}(), "
                                  "which that environment does not define")
            method = functools.partial(remote, self.hook)
        out: Any = method(rng) if self.hook == "random_action" else method()
        if type(out) is str:  # the common case, first: this runs once per turn
            return out
        if inspect.iscoroutine(out):
            out = await out
        if isinstance(out, dict):  # {"name": ..., "arguments": {...}}, as env.step takes it
            out = ToolCall.model_validate(out)
        if not isinstance(out, (ToolCall, str)):
            raise PolicyError(f"{type(env).__name__}.{self.hook}() returned {type(out).__name__}; "
                              "expected a ToolCall, a {'name', 'arguments'} dict or a string")
        return out

    async def aclose(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ExpertPolicy(ScriptedPolicy):
    """Plays ``env.expert_action()``: the environment's scripted solution."""

    hook = "expert_action"
    name = "expert"
    uses_rng = False


class RandomPolicy(ScriptedPolicy):
    """Plays ``env.random_action(rng)``: a uniformly random admissible action."""

    hook = "random_action"
    name = "random"
