"""The policy protocol every inference back end implements.

A :class:`Policy` turns a batch of conversations into :class:`Completion` objects that carry the
exact token ids and sampling logprobs, so the trainer never re-tokenizes. Scripted policies
(:mod:`agentgym.policies.scripted`) read the environment instead of a conversation and implement
:class:`EnvPolicy`; the rollout engine accepts either kind.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from agentgym.types import Message, ToolCall, ToolSpec

if TYPE_CHECKING:
    from agentgym.env import Environment


@dataclass
class SamplingParams:
    """How to sample one completion.

    ``temperature`` 0 means greedy decoding. ``stop`` strings end a completion; the text and token
    ids keep the stop string (so ``token_ids`` always decode to ``text``). ``seed`` makes sampling
    reproducible for back ends that support it: conversation i of a call is seeded with ``seed + i``.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive, got {self.max_new_tokens}")

    def seeds_for(self, n: int) -> list[int | None]:
        """Per-conversation seeds of a call with ``n`` conversations: ``seed + i``, or all None."""
        return [None if self.seed is None else self.seed + i for i in range(n)]

    def key(self) -> tuple:
        """A hashable identity: requests with equal keys can share one batched call."""
        return (self.temperature, self.top_p, self.max_new_tokens, tuple(self.stop), self.seed)


@dataclass
class Completion:
    """One generated completion.

    ``prompt_ids`` are the tokens the model was conditioned on (the rendered chat template);
    ``token_ids`` the tokens it sampled, including a final end-of-turn token when it stopped on one
    (``text`` leaves special tokens out); ``logprobs[i]`` is the log-probability of
    ``token_ids[i]`` under the distribution it was sampled from (see each back end for exactly
    which). Back ends that cannot report tokens return empty lists.
    """

    text: str
    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: Literal["stop", "length"]


@runtime_checkable
class Policy(Protocol):
    """A model that answers conversations.

    ``generate`` takes a batch of conversations that share ``tools`` and ``params`` and returns
    one :class:`Completion` per conversation, in order. It raises
    :class:`~agentgym.errors.PolicyError` when the back end cannot serve the request (unreachable
    server, unknown model); the rollout engine retries and then records the failure. Heavy work
    runs off the event loop. ``aclose`` releases sessions, servers or threads; a closed policy
    raises ``PolicyError`` when used.

    Optional capabilities the rollout engine uses when present:

    - ``count_tokens(messages, tools) -> int``: the prompt length in tokens (summarization);
    - ``context_length: int | None``: the model's context in tokens; with ``count_tokens``, an
      episode whose next prompt would not fit ends as overlong instead of sampling past it;
    - ``max_batch_size: int``: how many conversations one ``generate`` call should take;
    - ``max_inflight_batches: int``: how many ``generate`` calls may run at once (default 1);
    - a ``seeds`` keyword of ``generate``: ``seeds[i]`` seeds conversation i's sampling, so its
      completion does not depend on the conversations batched with it (reproducible rollouts).
    """

    async def generate(self, conversations: list[list[Message]], tools: list[ToolSpec] | None,
                       params: SamplingParams) -> list[Completion]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class EnvPolicy(Protocol):
    """A policy that acts from the environment's own state: the scripted expert and random policies.

    ``act`` returns the next action for ``env`` (a :class:`ToolCall` or plain text that the
    environment parses); ``rng`` is the episode's seeded random generator, or None when the
    policy sets ``uses_rng = False``.
    """

    async def act(self, env: Environment, rng: random.Random | None) -> ToolCall | str: ...

    async def aclose(self) -> None: ...


def context_overflow(prompt_tokens: int, new_tokens: int, context_length: int) -> str:
    """Why a prompt cannot be completed: it and its new tokens pass the model's context."""
    return (f"the prompt has {prompt_tokens} tokens and max_new_tokens asks for {new_tokens} more, past the "
            f"model's context of {context_length} tokens; a shorter context (window:K or summary:LIMIT) or "
            "fewer turns keeps prompts inside it")
