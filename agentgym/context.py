"""Context managers: what the policy sees each turn.

A context manager holds one episode's working context. The rollout engine drives it:

1. ``reset(initial, count_tokens)`` with the initial prompt ``s_1`` (system message and first
   observation) and a function that counts the prompt tokens of a message list;
2. each turn, ``messages()`` is the prompt the policy answers;
3. after the environment answers, ``add_turn(action, observation)`` returns what happens next:
   ``"continue"``, ``"summarize"`` (the engine then has the policy answer ``summary_prompt()``
   and passes the text to ``add_summary``) or ``"overlong"`` (the episode ends).

Three strategies ship: :class:`FullHistory`, :class:`SlidingWindow` (the last ``k`` turns) and
:class:`Summarize` (SUPO, docs/ALGORITHMS.md §4). :func:`context_factory` turns a spec string
(``full``, ``window:K``, ``summary:LIMIT[:MAX_SUMMARIES]``) into a factory of fresh instances,
one per episode.
"""

from __future__ import annotations

from typing import Callable, Literal

from agentgym.errors import ConfigError
from agentgym.types import Message

Verdict = Literal["continue", "summarize", "overlong"]
TokenCounter = Callable[[list[Message]], int]


def estimate_tokens(messages: list[Message]) -> int:
    """A rough token count (4 characters a token plus 4 per message) for policies without a tokenizer."""
    return sum(len(m.content) // 4 + 4 for m in messages)


class ContextManager:
    """Base class: keeps the full history; subclasses choose what :meth:`messages` shows.

    ``segment`` is the index of the current context segment (it grows by one after each summary)
    and ``summaries`` the number of summaries written so far.
    """

    def __init__(self) -> None:
        self.initial: list[Message] = []
        self.turns: list[Message] = []
        self.segment = 0
        self.summaries = 0
        self.count_tokens: TokenCounter = estimate_tokens

    def reset(self, initial: list[Message], count_tokens: TokenCounter = estimate_tokens) -> None:
        """Start an episode from the initial prompt ``initial`` (``s_1``)."""
        self.initial, self.turns = list(initial), []
        self.segment = self.summaries = 0
        self.count_tokens = count_tokens

    def messages(self) -> list[Message]:
        """The prompt for the next action (a new list; the messages themselves are shared)."""
        return self.initial + self.turns

    def add_turn(self, action: Message, observation: Message) -> Verdict:
        """Record the agent's ``action`` and the environment's ``observation``; say what happens next."""
        self.turns += (action, observation)
        return "continue"

    def summary_prompt(self) -> list[Message]:
        """The prompt that asks for a summary (only after ``add_turn`` returned ``"summarize"``)."""
        raise NotImplementedError(f"{type(self).__name__} does not summarize")

    def add_summary(self, summary: str) -> None:
        """Continue from a summary the policy wrote."""
        raise NotImplementedError(f"{type(self).__name__} does not summarize")


class FullHistory(ContextManager):
    """Every turn since the start: ``s_1, a_1, o_1, ..., a_t, o_t``."""


class SlidingWindow(ContextManager):
    """The initial prompt plus the last ``k`` turns (action and observation pairs)."""

    def __init__(self, k: int = 4) -> None:
        super().__init__()
        if k <= 0:
            raise ConfigError(f"the sliding window must keep at least one turn, got k={k}")
        self.k = k

    def add_turn(self, action: Message, observation: Message) -> Verdict:
        self.turns += (action, observation)
        del self.turns[:-2 * self.k]
        return "continue"


DEFAULT_SUMMARY_INSTRUCTION = (
    "Your context is full. Summarize the interaction so far for yourself: the task, what you have done, "
    "what you have learned about the environment, and what remains to be done. Reply with the summary only."
)
SUMMARY_PREFIX = "Summary of your progress so far:\n"


class Summarize(ContextManager):
    """SUPO's summarization-augmented context (docs/ALGORITHMS.md §4.1).

    The working context starts as ``s_1``; each turn appends the action ``a_t`` and observation
    ``o_t``. When ``|s_t| + |a_t| + |o_t|`` (the token count of the context with the new turn)
    strictly exceeds ``limit`` (``>``, as in test vector TV-S1), the new turn is discarded (the
    policy is never conditioned on it) and:

    - if fewer than ``max_summaries`` summaries were written, the same policy answers
      ``s_t ⊕ v_sum`` (``v_sum`` = ``instruction``) with a summary ``z``, and the next working
      context is ``s_1 ⊕ z`` (``z`` as a user message after ``s_1``); the segment index grows by 1;
    - otherwise the episode ends as overlong.

    The rollout engine records the summary as a step of ``kind="summary"`` in the segment it
    closes, and lists discarded turns in ``Trajectory.metadata["discarded_steps"]``.
    ``summary_tokens`` caps the summary's length (default: the action's ``max_new_tokens``).
    """

    def __init__(self, limit: int = 2048, max_summaries: int = 2, *, instruction: str = DEFAULT_SUMMARY_INSTRUCTION,
                 summary_tokens: int | None = None) -> None:
        super().__init__()
        if limit <= 0:
            raise ConfigError(f"the summarization token limit must be positive, got {limit}")
        if max_summaries < 0:
            raise ConfigError(f"max_summaries must be >= 0, got {max_summaries}")
        self.limit, self.max_summaries = limit, max_summaries
        self.instruction, self.summary_tokens = instruction, summary_tokens
        self.summary: Message | None = None

    def reset(self, initial: list[Message], count_tokens: TokenCounter = estimate_tokens) -> None:
        super().reset(initial, count_tokens)
        self.summary = None

    def messages(self) -> list[Message]:
        head = self.initial if self.summary is None else [*self.initial, self.summary]
        return head + self.turns

    def add_turn(self, action: Message, observation: Message) -> Verdict:
        if self.count_tokens([*self.messages(), action, observation]) <= self.limit:
            self.turns += (action, observation)
            return "continue"
        return "summarize" if self.summaries < self.max_summaries else "overlong"

    def summary_prompt(self) -> list[Message]:
        return [*self.messages(), Message(role="user", content=self.instruction)]

    def add_summary(self, summary: str) -> None:
        self.summary = Message(role="user", content=SUMMARY_PREFIX + summary.strip())
        self.turns = []
        self.summaries += 1
        self.segment += 1


def context_factory(spec: str | Callable[[], ContextManager]) -> Callable[[], ContextManager]:
    """A zero-argument factory of fresh context managers.

    ``spec`` is a factory already (a class or a lambda), or one of ``"full"``, ``"window:K"``,
    ``"summary:LIMIT"`` and ``"summary:LIMIT:MAX_SUMMARIES"``.
    """
    if callable(spec):
        return spec
    kind, _, rest = spec.partition(":")
    try:
        args = [int(a) for a in rest.split(":")] if rest else []
    except ValueError:
        raise ConfigError(f"bad context spec {spec!r}: its numbers must be integers "
                          "(full, window:K, summary:LIMIT or summary:LIMIT:MAX_SUMMARIES)") from None
    if kind == "full" and not args:
        return FullHistory
    if kind == "window" and len(args) <= 1:
        k = args[0] if args else 4
        SlidingWindow(k)  # validate now, not in the first episode
        return lambda: SlidingWindow(k)
    if kind == "summary" and len(args) <= 2:
        limit = args[0] if args else 2048
        most = args[1] if len(args) > 1 else 2
        Summarize(limit, most)
        return lambda: Summarize(limit, most)
    raise ConfigError(f"unknown context spec {spec!r}; use full, window:K, summary:LIMIT or summary:LIMIT:MAX_SUMMARIES")
