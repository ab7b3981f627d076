"""The environment authoring API: :class:`Environment` and the :func:`tool` decorator."""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import re
import types
import typing
import warnings
from dataclasses import dataclass
from typing import Annotated, Any, Callable, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from agentgym.errors import EnvironmentClosedError, InvalidActionError
from agentgym.parsing import parse_action
from agentgym.types import StepResult, Task, ToolCall, ToolSpec


@dataclass(frozen=True)
class _Tool:
    spec: ToolSpec
    args_model: type[BaseModel]
    method_name: str
    fields: tuple[str, ...] = ()  # argument names, cached: pydantic's model_fields lookup is slow per call
    is_async: bool = True


_DOC_SECTION = re.compile(r"(Args|Arguments|Returns?|Yields?|Raises|Examples?|Notes?|Warnings?|See Also|Attributes):(\s|$)")


def _doc_parts(fn: Callable) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its summary and the ``Args:`` descriptions.

    The summary is the text before the first section (``Args:``, ``Returns:``, ``Raises:``, ...).
    """
    summary: list[str] = []
    params: dict[str, str] = {}
    section, current = None, None
    for line in (inspect.getdoc(fn) or "").splitlines():
        header = _DOC_SECTION.match(line)  # at column 0: getdoc removed the common indent
        if header:
            section, current = header.group(1), None
            continue
        if section is None:
            summary.append(line)
            continue
        if section not in ("Args", "Arguments"):
            continue
        m = re.match(r"\s{0,8}(\w+)\s*(?:\([^)]*\))?:\s*(.*)", line)
        if m and not line.startswith(" " * 9):
            current = m.group(1)
            params[current] = m.group(2).strip()
        elif current and line.strip():
            params[current] += " " + line.strip()
        elif not line.strip() and params:
            current = None
    return " ".join(" ".join(summary).split()), params


def tool(fn: Callable | None = None, *, name: str | None = None) -> Any:
    """Mark an environment method as a tool the agent can call.

    The JSON schema comes from the method's type hints and docstring (summary line and an
    ``Args:`` section); arguments are validated against it before the method runs. Use as
    ``@tool`` or ``@tool(name="other_name")``. A plain ``def`` tool runs on the shared event loop:
    blocking work belongs in an ``async def`` tool that awaits it (a step time limit can stop a
    tool only at an ``await``).
    """

    def mark(f: Callable) -> Callable:
        f.__agentgym_tool__ = name or f.__name__  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic's lax mode would read true as 1
        raise ValueError("expected a number, got a boolean")
    return value


_CONTAINERS = (list, set, frozenset, tuple, dict)


def _numeric_without_bool(annotation: Any) -> Any:
    """``annotation``, refusing booleans where it takes numbers but not booleans (``int``, ``float | None``,
    ``Literal[1, 2]``, ``list[int]``: pydantic reads true as 1 there too)."""
    origin = typing.get_origin(annotation)
    if origin in _CONTAINERS:
        args = typing.get_args(annotation)
        inner = tuple(a if a is Ellipsis else _numeric_without_bool(a) for a in args)
        return origin[inner] if inner != args else annotation
    union = origin in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if union else (annotation,)
    if union:  # a list[int] member gets its own check
        inner = tuple(_numeric_without_bool(m) if typing.get_origin(m) in _CONTAINERS else m for m in members)
        if inner != members:
            annotation, members = typing.Union[inner], inner
    literals = [v for m in members if typing.get_origin(m) is typing.Literal for v in typing.get_args(m)]
    if bool in members or any(isinstance(v, bool) for v in literals):
        return annotation
    if not any(m in (int, float) for m in members) and not any(type(v) in (int, float) for v in literals):
        return annotation
    return Annotated[annotation, BeforeValidator(_not_bool)]


def _finite(reward: Any) -> float:
    """A reward as a float; NaN and infinity would poison every advantage of its group."""
    if isinstance(reward, bool) or not isinstance(reward, numbers.Real) or not math.isfinite(reward):
        raise ValueError(f"a reward must be a finite number, got {reward!r}")
    return float(reward)


def _build_tool(method_name: str, fn: Callable, tool_name: str) -> _Tool:
    hints = typing.get_type_hints(fn)
    summary, arg_docs = _doc_parts(fn)
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = _numeric_without_bool(hints.get(pname, Any))
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (annotation, Field(default, description=arg_docs.get(pname)))
    model = create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("required", [])
    untyped = [p for p in fields if p not in hints]
    gaps = ["no docstring, so the model sees no description"] if not summary else []
    if untyped:
        gaps.append(f"no type hint on {', '.join(untyped)}, so the model sees no type and any value passes")
    if gaps:  # reported at the tool's definition, where it is fixed
        code = inspect.unwrap(fn).__code__
        warnings.warn_explicit(f"tool {tool_name!r} ({fn.__qualname__}) has {'; and '.join(gaps)}", UserWarning,
                               code.co_filename, code.co_firstlineno, module=fn.__module__)
    return _Tool(ToolSpec(name=tool_name, description=summary, parameters=schema), model, method_name,
                 tuple(fields), inspect.iscoroutinefunction(fn))


def _format_validation_error(tool_name: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        if err["type"] == "missing":
            problems.append(f"missing argument '{where}'")
        elif err["type"] == "extra_forbidden":
            problems.append(f"unexpected argument '{where}'")
        else:
            problems.append(f"argument '{where}': {str(err['msg']).removeprefix('Value error, ')}")
    return f"invalid call to '{tool_name}': " + "; ".join(problems)


_EPISODE_ATTRIBUTES = {"task", "turn", "done", "success", "episode_reward", "reached"}  # set per episode


def first_observation(task: Task, observation: str) -> str:
    """What the agent sees first: the task's prompt, then the observation ``reset`` returned (the prompt
    once: not again when the observation already holds it)."""
    prompt = task.prompt
    return observation if not prompt or prompt in observation else f"{prompt}\n\n{observation}"


def _read_only(name: str, instead: str) -> Callable[[Any, Any], None]:
    """The setter of a base-class episode attribute: refuses, saying what to do instead."""
    def refuse(self: Any, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__}.{name} is the base class's episode state and cannot be set "
                             f"({instead}); name an attribute of your own otherwise")
    return refuse


class Environment:
    """Base class of every agentgym environment.

    Subclasses implement:

    - ``async reset(task) -> str``: set up the episode for ``task`` and return the first
      observation. The base class clears its episode bookkeeping before your ``reset`` runs.
    - tools: methods decorated with :func:`tool` (async or plain), returning the observation text.
      A tool that finds the action inadmissible raises :class:`~agentgym.errors.InvalidActionError`
      with the observation to show; the step is then marked invalid.
    - ``state_key() -> str``: a canonical identity of the current state (no turn counters or noise);
      two histories that reach the same state give the same key. GiGPO groups anchor states by it.

    Inside tools, call :meth:`finish` to end the episode and :meth:`reach` to report a milestone.

    Optional capabilities: ``snapshot()``/``restore()`` (exact state copies, for forking replays
    and identical group starts), ``on_text(text)`` (turn a plain-text answer into a tool call),
    ``expert_action()`` and ``random_action(rng)`` (the scripted policies).

    Multi-agent environments declare their roles in ``agents`` (role id -> the instruction that
    role's system message adds) and say who acts next with ``current_agent()`` (asked before each
    turn). Each role keeps a conversation of its own: an observation, an invalid action's error
    included, goes to the role that acts next only, so roles can hold private information (keep
    the same role current after an invalid action to let it retry). The task's prompt goes with
    the first observation only. Steps record the role (``Step.agent``) for per-agent credit.

    Environments own resources: use them as async context managers or call :meth:`aclose`.
    """

    _tools: ClassVar[dict[str, _Tool]] = {}
    agents: ClassVar[dict[str, str]] = {}  # role id -> its instruction; empty: one agent, "agent"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        tools: dict[str, _Tool] = {}
        for klass in reversed(cls.__mro__):
            defined_here: dict[str, str] = {}  # tool name -> method, in this class (a subclass may override)
            for attr, value in vars(klass).items():
                wrapped = isinstance(value, (staticmethod, classmethod))
                tool_name = (getattr(value, "__agentgym_tool__", None)  # @tool over @staticmethod, or under it
                             or (getattr(value.__func__, "__agentgym_tool__", None) if wrapped else None))
                if tool_name is None:
                    continue
                if wrapped:
                    raise TypeError(f"{klass.__name__}.{attr}: a tool is an instance method (`async def {attr}"
                                    "(self, ...)`), not a static or class method")
                if attr in vars(Environment) or attr in _EPISODE_ATTRIBUTES:
                    raise TypeError(f"{klass.__name__}.{attr}: a tool method named {attr!r} hides Environment.{attr}; "
                                    f"name the method otherwise and keep the tool's name with @tool(name={attr!r})")
                if tool_name in defined_here:
                    raise TypeError(f"{klass.__name__}: methods {defined_here[tool_name]!r} and {attr!r} are both "
                                    f"the tool {tool_name!r}; tool names must be unique")
                defined_here[tool_name] = attr
                tools[tool_name] = _build_tool(attr, value, tool_name)
        cls._tools = tools
        if "reset" in vars(cls):
            reset = vars(cls)["reset"]
            if not inspect.iscoroutinefunction(inspect.unwrap(reset)):
                raise TypeError(f"{cls.__name__}.reset must be a coroutine: write `async def reset(self, task)`")
            cls.reset = _wrap_reset(reset)  # type: ignore[method-assign]

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"{type(self).__name__} takes no options, got {sorted(options)}")

    # ----- episode bookkeeping -------------------------------------------------------------
    _closed: bool = False
    _episode_started: bool = False

    def _begin_episode(self, task: Task) -> None:
        if self._closed:
            raise EnvironmentClosedError(f"{type(self).__name__} is closed; create a new one with agentgym.make")
        self.task = task
        self._turn = 0
        self._done = False
        self._success = False
        self._episode_reward = 0.0
        self._reached: list[str] = []
        self._step_reward = 0.0
        self._step_milestones: list[str] = []
        self._step_info: dict[str, Any] = {}
        self._episode_started = True

    # the base class keeps these; a subclass attribute of the same name would corrupt them silently
    turn = property(lambda self: self._turn, _read_only("turn", "the number of steps taken"),
                    doc="Steps taken in this episode.")
    done = property(lambda self: self._done or (self._episode_started and self._turn >= self.task.max_turns),
                    _read_only("done", "call self.finish(reward) to end the episode"),
                    doc="Whether the episode is over: ended (:meth:`finish`) or at the task's turn limit.")
    success = property(lambda self: self._success,
                       _read_only("success", "pass it to self.finish(reward, success=...)"),
                       doc="Whether the episode ended in success.")
    episode_reward = property(lambda self: self._episode_reward,
                              _read_only("episode_reward", "add with self.add_reward() or self.finish(reward)"),
                              doc="The reward paid so far in this episode.")
    reached = property(lambda self: self._reached, _read_only("reached", "report one with self.reach(milestone)"),
                       doc="The milestones reached so far, in order.")

    async def reset(self, task: Task) -> str:
        """Start an episode for ``task`` and return the first observation."""
        raise NotImplementedError(f"{type(self).__name__} must implement async reset(task)")

    def state_key(self) -> str:
        """Canonical identity of the current state, for GiGPO anchor grouping."""
        raise NotImplementedError(f"{type(self).__name__} does not define state_key()")

    @property
    def tools(self) -> list[ToolSpec]:
        """The tool specs the agent may call."""
        return [t.spec for t in self._tools.values()]

    def finish(self, reward: float = 1.0, success: bool | None = None) -> None:
        """End the episode (``terminated``) with ``reward``; success defaults to ``reward > 0``."""
        if self._done:
            raise RuntimeError("finish() was called again after the episode ended; it pays once")
        self._step_reward += _finite(reward)
        self._done = True
        self._success = reward > 0 if success is None else success

    def add_reward(self, reward: float) -> None:
        """Add an intermediate reward to the current step without ending the episode."""
        self._step_reward += _finite(reward)

    def add_info(self, **fields: Any) -> None:
        """Attach fields to this step's ``StepResult.info`` (e.g. a breakdown of the reward)."""
        self._step_info.update(fields)

    def reach(self, milestone: str) -> None:
        """Report that ``milestone`` is reached; only the first time counts."""
        declared = {m.id for m in self.task.milestones}
        if declared and milestone not in declared:
            raise ValueError(f"milestone '{milestone}' is not declared by task {self.task.id}: {sorted(declared)}")
        if milestone not in self._reached:
            self._reached.append(milestone)
            self._step_milestones.append(milestone)

    def current_agent(self) -> str:
        """The role that acts next: the first of ``agents`` unless a multi-agent environment says otherwise."""
        return next(iter(self.agents), "agent")

    def on_text(self, text: str) -> ToolCall | None:
        """Turn a plain-text answer into a tool call, or return None to reject it (the default)."""
        return None

    @property
    def supports_snapshot(self) -> bool:
        """Whether this environment implements snapshot()/restore()."""
        return type(self).snapshot is not Environment.snapshot

    def snapshot(self) -> Any:
        """Return a value that :meth:`restore` turns back into exactly the current state."""
        raise NotImplementedError(f"{type(self).__name__} does not support snapshot()")

    def restore(self, snapshot: Any) -> None:
        """Return to a state captured by :meth:`snapshot`."""
        raise NotImplementedError(f"{type(self).__name__} does not support restore()")

    def _base_snapshot(self) -> dict[str, Any]:
        """The base class's episode bookkeeping, for subclasses' snapshot()."""
        return {"turn": self.turn, "done": self._done, "success": self.success,
                "episode_reward": self.episode_reward, "reached": list(self.reached)}

    def _base_restore(self, state: dict[str, Any]) -> None:
        self._turn, self._done, self._success = state["turn"], state["done"], state["success"]
        self._episode_reward, self._reached = state["episode_reward"], list(state["reached"])
        self._step_reward, self._step_milestones, self._step_info = 0.0, [], {}

    # ----- acting ----------------------------------------------------------------------------
    async def step(self, action: ToolCall | dict[str, Any] | str) -> StepResult:
        """Execute one action and return its :class:`StepResult`.

        ``action`` is a :class:`ToolCall`, a dict with its ``name`` and ``arguments``, or raw model
        text (parsed here). Bad input never raises:
        an unparseable response, an unknown tool, or missing or mistyped arguments become an error
        observation naming the problem and the valid tools, with ``valid=False``. Raises only when
        the environment is closed or was never reset (programming errors). Once the episode has ended
        or reached the task's ``max_turns``, a step runs nothing and returns "The episode is over.".
        """
        if self._closed:
            raise EnvironmentClosedError(f"{type(self).__name__} is closed; create a new one with agentgym.make")
        if not self._episode_started:
            raise RuntimeError("call reset(task) before step()")
        self._step_reward, self._step_milestones, self._step_info = 0.0, [], {}
        if self._done or self._turn >= self.task.max_turns:  # the final step's reward was paid once
            return self._result("The episode is over.", valid=False)
        self._turn += 1
        observation, valid, error = await self._execute(action)
        return self._result(observation, valid=valid, error=error)

    async def _execute(self, action: ToolCall | dict[str, Any] | str) -> tuple[str, bool, str | None]:
        call = action if isinstance(action, ToolCall) else None
        if isinstance(action, dict):  # {"name": ..., "arguments": {...}}, as JSON tool calls come
            try:
                call = ToolCall.model_validate(action)
            except ValidationError:
                return self._error('a dict action needs "name" and "arguments" (or pass a ToolCall or text)')
        if call is None:
            parsed = parse_action(str(action), self._tools.keys())
            if parsed.error:
                return self._error(parsed.error)
            call = parsed.call or self.on_text(parsed.text)
            if call is None:
                return self._error("no tool call found in the response")
        tool_ = self._tools.get(call.name)
        if tool_ is None:
            return self._error(f"unknown tool '{call.name}'")
        try:
            args = tool_.args_model.model_validate(call.arguments)
        except ValidationError as exc:
            return self._error(_format_validation_error(call.name, exc))
        method = getattr(self, tool_.method_name)
        kwargs = {k: getattr(args, k) for k in tool_.fields}
        try:
            out = await method(**kwargs) if tool_.is_async else method(**kwargs)
        except InvalidActionError as exc:
            return str(exc), False, str(exc)
        if out is None:  # a forgotten return would show the agent "None"
            raise TypeError(f"{type(self).__name__}.{tool_.method_name} returned None; a tool returns the "
                            "observation text")
        return str(out), True, None

    def _error(self, problem: str) -> tuple[str, bool, str]:
        names = ", ".join(self._tools) or "(none)"
        return f"Error: {problem}. Valid tools: {names}.", False, problem

    def _result(self, observation: str, *, valid: bool, error: str | None = None) -> StepResult:
        self._episode_reward += self._step_reward
        truncated = not self._done and self._turn >= self.task.max_turns
        key = self._current_state_key()
        info: dict[str, Any] = {"success": self._success, **self._step_info}
        if error is not None:
            info["error"] = error
        return StepResult(observation=observation, reward=self._step_reward, milestones=list(self._step_milestones),
                          terminated=self._done, truncated=truncated, valid=valid, state_key=key, info=info)

    def _current_state_key(self) -> str | None:
        """``state_key()``, checked; None for environments that define none."""
        try:
            key = self.state_key()
        except NotImplementedError:
            return None
        if key is not None and not isinstance(key, str):
            raise TypeError(f"{type(self).__name__}.state_key() must return a str, got {type(key).__name__} {key!r}")
        return key

    # ----- lifecycle ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` has run."""
        return self._closed

    async def aclose(self) -> None:
        """Release the environment's resources; using it afterwards raises EnvironmentClosedError."""
        self._closed = True

    async def __aenter__(self) -> "Environment":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _wrap_reset(reset: Callable) -> Callable:
    @functools.wraps(reset)
    async def wrapped(self: Environment, task: Task, *args: Any, **kwargs: Any) -> str:
        outermost = not getattr(self, "_in_reset", False)
        if outermost:
            self._begin_episode(task)
            self._in_reset = True
        try:
            observation = await reset(self, task, *args, **kwargs)
            if outermost and not isinstance(observation, str):
                raise TypeError(f"{type(self).__name__}.reset must return the first observation as a str, "
                                f"got {type(observation).__name__}")
            return observation
        finally:
            if outermost:
                self._in_reset = False

    return wrapped
