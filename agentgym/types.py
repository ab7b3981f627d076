"""The data model every part of agentgym shares (pydantic v2).

A run is a list of :class:`Trajectory` objects. Each holds the :class:`Step` records of one
episode, token-exact: the prompt token ids the policy saw, the token ids it sampled and their
sampling logprobs, so training never re-tokenizes. JSON round-trips are lossless
(``Trajectory.model_validate_json(t.model_dump_json()) == t``).
"""

from __future__ import annotations

from typing import Any, Callable, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]
M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    # NaN and infinities as the JSON constants Python's json and pydantic read back, not as null
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class Milestone(_Model):
    """A verifiable sub-goal of a task, reported by the environment the step it is first reached."""

    id: str
    description: str = ""
    weight: float = Field(1.0, description="Reward weight when milestones are used as a bonus.")


class Task(_Model):
    """One task instance: what the agent is asked and the data its environment needs to set up."""

    id: str
    env: str = Field(description="Registry id of the environment, e.g. 'household-v0'.")
    split: Literal["train", "test"] = "train"
    prompt: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    milestones: list[Milestone] = Field(default_factory=list)
    max_turns: int = Field(50, gt=0)


class ToolSpec(_Model):
    """A tool the agent may call: name, description and JSON-schema parameters."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_openai(self) -> dict[str, Any]:
        """Render in the OpenAI ``tools`` format (also what chat templates expect)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


class ToolCall(_Model):
    """A parsed action: a tool name and its arguments."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class Message(_Model):
    """A chat message as policies and chat templates see it."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """Render as an OpenAI chat message dict."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id or f"call_{i}", "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for i, c in enumerate(self.tool_calls)
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


class StepResult(_Model):
    """What the environment returns for one action.

    ``terminated`` means the task itself ended (solved or failed for good); ``truncated`` means a
    limit cut the episode short (turns, time, context). Credit assignment treats them differently,
    so they are never merged.
    """

    observation: str
    reward: float = 0.0
    milestones: list[str] = Field(default_factory=list, description="Milestone ids first reached this step.")
    terminated: bool = False
    truncated: bool = False
    valid: bool = Field(True, description="False when the action could not be parsed or executed.")
    state_key: str | None = Field(None, description="Canonical state identity after the step (GiGPO anchor).")
    info: dict[str, Any] = Field(default_factory=dict)


class Step(_Model):
    """One agent turn, fully recorded."""

    index: int
    agent: str = "agent"
    kind: Literal["action", "summary"] = "action"
    segment: int = Field(0, description="Context segment (increments after each summary, SUPO).")
    state_key: str | None = Field(None, description="State identity the agent acted from (GiGPO anchor).")
    messages: list[Message] | None = Field(None, description="The prompt messages the policy saw.")
    prompt_ids: list[int] | None = None
    response: str = ""
    response_ids: list[int] | None = None
    logprobs: list[float] | None = None
    action: ToolCall | None = None
    parse_error: str | None = None
    result: StepResult | None = None
    timings: dict[str, float] = Field(default_factory=dict)

    @property
    def reward(self) -> float:
        """The environment reward of this step (0 for summaries)."""
        return self.result.reward if self.result is not None else 0.0

    @property
    def valid(self) -> bool:
        """Whether the action parsed and was admissible."""
        return self.result.valid if self.result is not None else self.kind == "summary"


class Trajectory(_Model):
    """One episode: the steps of one sample of one task."""

    id: str
    group_id: str = Field(description="Shared by all samples of one task in one batch.")
    task_id: str
    env: str
    seed: int | None = None
    steps: list[Step] = Field(default_factory=list)
    reward: float = Field(0.0, description="Episode return: the sum of step rewards.")
    success: bool = False
    terminated: bool = False
    truncated: bool = False
    overlong: bool = Field(False, description="Ended because the context ran out: the summary budget was spent "
                           "(SUPO), or the next prompt would not fit the model (metadata['context_full']).")
    error: str | None = Field(None, description="Set when the episode failed for a system reason.")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def num_turns(self) -> int:
        """Number of action steps (summaries excluded)."""
        return sum(1 for s in self.steps if s.kind == "action")


_UNCHECKED_SPECS: dict[type, tuple[dict[str, Any], list[tuple[str, Any]]]] = {}


def _slot_setter(name: str) -> Callable[[Any, Any], None]:
    """BaseModel's setter of the slot ``name``, called directly: four ``object.__setattr__`` calls cost
    as much as the rest of :func:`unchecked`. A pydantic without the slot gets the general path."""
    setter = getattr(BaseModel.__dict__.get(name), "__set__", None)
    return setter if setter is not None else lambda model, value: object.__setattr__(model, name, value)


_SET_DICT = _slot_setter("__dict__")
_SET_FIELDS_SET = _slot_setter("__pydantic_fields_set__")
_SET_EXTRA = _slot_setter("__pydantic_extra__")
_SET_PRIVATE = _slot_setter("__pydantic_private__")


def unchecked(cls: type[M], values: dict[str, Any]) -> M:
    """Build ``cls`` from ``values`` without validating them: for the rollout engine's hot loop.

    The caller guarantees every value already has its field's type (model instances, ``str``,
    ``int``, ...). The result equals ``cls(**values)``, fields-set included. It is what
    ``model_construct`` does, minus its per-field Python work, which made that slower than
    validating (pydantic 2.14).
    """
    spec = _UNCHECKED_SPECS.get(cls)
    if spec is None:
        fields = cls.model_fields
        spec = _UNCHECKED_SPECS[cls] = ({n: f.default for n, f in fields.items()},
                                        [(n, f.default_factory) for n, f in fields.items() if f.default_factory])
    data = spec[0].copy()  # every field, in declaration order
    data.update(values)
    for name, factory in spec[1]:
        if name not in values:
            data[name] = factory()
    model = object.__new__(cls)
    _SET_DICT(model, data)
    _SET_FIELDS_SET(model, set(values))
    _SET_EXTRA(model, None)
    _SET_PRIVATE(model, None)
    return model
