"""An in-process vLLM engine as a policy (GPU machines; optional extra ``agentgym[vllm]``).

On CPU machines, run ``vllm serve`` in its own environment and use the ``openai`` policy instead
(``scripts/test_vllm.sh`` shows how). Logprobs are vLLM's: those of the raw model distribution
unless the engine is created with ``logprobs_mode="processed_logprobs"``.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from agentgym.errors import PolicyError
from agentgym.policies.base import Completion, SamplingParams
from agentgym.types import Message, ToolSpec


def vllm_unavailable_reason() -> str | None:
    """Why vLLM cannot run here (not installed, no GPU), or None when it can."""
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # ImportError, or a CUDA build failing to load
        return f"vllm cannot be imported: {type(exc).__name__}: {exc}"
    try:
        import torch

        if not torch.cuda.is_available():
            return "vllm's in-process policy needs a CUDA GPU; none is available"
    except ImportError:
        return "torch is not installed"
    return None


class VLLMPolicy:
    """A ``vllm.LLM`` engine loaded from the model directory ``model``; ``engine_options`` go to ``vllm.LLM``."""

    def __init__(self, model: str | Path, *, name: str | None = None, max_batch_size: int = 64,
                 **engine_options: Any) -> None:
        reason = vllm_unavailable_reason()
        if reason:
            raise PolicyError(f"{reason}; use the openai policy against a vllm server instead")
        import vllm

        self.llm = vllm.LLM(model=str(model), **engine_options)
        self.tokenizer = self.llm.get_tokenizer()
        self.name = name or Path(model).name
        self.max_batch_size = max_batch_size
        self._lock = threading.Lock()
        self._closed = False

    def render(self, conversation: list[Message], tools: list[ToolSpec] | None = None) -> list[int]:
        """Prompt token ids under the model's chat template."""
        kwargs = {"tools": [t.to_openai() for t in tools]} if tools else {}
        text = self.tokenizer.apply_chat_template([m.to_openai() for m in conversation], tokenize=False,
                                                  add_generation_prompt=True, **kwargs)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, messages: list[Message], tools: list[ToolSpec] | None = None) -> int:
        """Prompt length in tokens."""
        return len(self.render(messages, tools))

    async def generate(self, conversations: list[list[Message]], tools: list[ToolSpec] | None,
                       params: SamplingParams, seeds: list[int | None] | None = None) -> list[Completion]:
        """Render and generate in a worker thread (``seeds[i]`` seeds conversation i)."""
        if self._closed:
            raise PolicyError(f"policy {self.name!r} is closed")
        prompts = [self.render(c, tools) for c in conversations]
        if seeds is None:
            seeds = params.seeds_for(len(prompts))
        return await asyncio.to_thread(self._generate, prompts, params, seeds)

    def _generate(self, prompts: list[list[int]], params: SamplingParams, seeds: list[int | None]) -> list[Completion]:
        import vllm

        sampling = [vllm.SamplingParams(temperature=params.temperature, top_p=params.top_p,
                                        max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
                                        seed=seed, logprobs=0, include_stop_str_in_output=True)
                    for seed in seeds]
        with self._lock:
            outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], sampling, use_tqdm=False)
        completions = []
        for prompt, out in zip(prompts, outputs):
            seq = out.outputs[0]
            ids = list(seq.token_ids)
            lps = [float(step[tok].logprob) for tok, step in zip(ids, seq.logprobs or [])]
            completions.append(Completion(text=seq.text, prompt_ids=prompt, token_ids=ids, logprobs=lps,
                                          finish_reason="length" if seq.finish_reason == "length" else "stop"))
        return completions

    async def aclose(self) -> None:
        """Drop the engine."""
        self._closed = True
        self.llm = None
