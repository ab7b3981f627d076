"""Register agentgym environments with Gymnasium as ``agentgym/<id>``, lazily.

Gymnasium 1.x has no plug-in discovery and importing it costs about 0.2 s, so ``import agentgym``
does not import it. Instead, a meta-path finder waits for ``gymnasium.envs.registration`` to be
imported and registers our ids right after that module runs (or at once, when it already has).
The registered entry points are strings, so nothing of the adapter loads until ``gymnasium.make``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Any

_TARGET = "gymnasium.envs.registration"


def register_gymnasium_envs() -> None:
    """Register every agentgym environment with Gymnasium as ``agentgym/<id>``."""
    from agentgym import registry

    for spec in registry.registered():
        register_one(spec.id)


def register_one(env_id: str) -> None:
    """Register ``env_id`` with Gymnasium, if Gymnasium is imported (otherwise the hook will)."""
    if _TARGET not in sys.modules:
        return
    from gymnasium.envs.registration import register, registry as gym_registry

    gym_id = f"agentgym/{env_id}"
    if gym_id not in gym_registry:
        register(id=gym_id, entry_point="agentgym.gym_adapter:AgentGymEnv",
                 kwargs={"env_id": env_id}, disable_env_checker=True)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_module = loader.exec_module

        def run_then_register(module: Any) -> None:
            run_module(module)
            sys.modules[_TARGET] = module  # what the registration below imports
            register_gymnasium_envs()

        loader.exec_module = run_then_register  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Make ``gymnasium.make("agentgym/<id>")`` work whenever Gymnasium is imported."""
    if _TARGET in sys.modules:
        register_gymnasium_envs()
    elif not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
