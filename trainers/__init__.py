"""The RL trainer, the SFT warm start, losses, batching and checkpoints.

Importing this package stays light (no torch): the names below load their submodule on first
use. ``agentgym.trainers.config`` (pydantic only) is safe to import anywhere.

- :func:`policy_loss`, :func:`kl_penalty`, :func:`entropy_from_logits` (``loss``): docs/ALGORITHMS.md §8
- :class:`TrainConfig`, :class:`SFTConfig`, :func:`load_config` (``config``): one config per run
- :func:`train` (``rl``): the RL loop; :func:`run_sft` (``sft``): the supervised warm start
- :func:`build_sequences` (``batching``): trajectories to token sequences with loss masks
- :class:`RayEnvPool` (``ray_envs``): environments in Ray actors for the rollout engine
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "policy_loss": "loss",
    "kl_penalty": "loss",
    "entropy_from_logits": "loss",
    "aggregate": "loss",
    "TrainConfig": "config",
    "SFTConfig": "config",
    "load_config": "config",
    "train": "rl",
    "run_sft": "sft",
    "build_sequences": "batching",
    "RayEnvPool": "ray_envs",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentgym.trainers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"agentgym.trainers.{module}"), name)
    globals()[name] = value
    return value
