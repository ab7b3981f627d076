"""agentgym: build, run, evaluate and train LLM agents in multi-turn, tool-using environments.

The public surface is small on purpose; everything else lives in submodules
(``agentgym.types``, ``agentgym.credit``, ``agentgym.policies``, ``agentgym.trainers``, ...).
Importing this package stays light: no torch, transformers, playwright, ray, docker or vllm.
"""

from __future__ import annotations

from typing import Any

from agentgym import _gym_hook
from agentgym.env import Environment, tool
from agentgym.errors import InvalidActionError
from agentgym.registry import load_tasks, make, register
from agentgym.types import Milestone, Step, StepResult, Task, ToolCall, ToolSpec, Trajectory

__version__ = "0.1.0"

_gym_hook.install()

__all__ = [
    "Environment",
    "InvalidActionError",
    "Milestone",
    "RolloutRunner",
    "Step",
    "StepResult",
    "Task",
    "ToolCall",
    "ToolSpec",
    "Trajectory",
    "load_tasks",
    "make",
    "register",
    "tool",
]


def __getattr__(name: str) -> Any:
    if name == "RolloutRunner":  # the rollout engine pulls in asyncio machinery; load it on first use
        from agentgym.rollout import RolloutRunner

        return RolloutRunner
    raise AttributeError(f"module 'agentgym' has no attribute {name!r}")
