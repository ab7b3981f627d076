"""The environment authoring API: tools, validation, errors as observations, lifecycle."""

import re
import sys
from pathlib import Path
from typing import Literal

import pytest

import agentgym as ag
from agentgym.errors import EnvironmentClosedError, InvalidActionError
from agentgym.types import Milestone, ToolCall

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from counter import Counter  # noqa: E402  (the README example)


class Lamp(ag.Environment):
    """A lamp to switch on; a sync tool, milestones and an inadmissible action."""

    async def reset(self, task: ag.Task) -> str:
        self.on = False
        return "A lamp."

    @ag.tool
    def switch(self, state: bool, note: str = "") -> str:
        """Switch the lamp.

        Args:
            state: True for on, False for off.
            note: Anything to say.
        """
        if state == self.on:
            raise InvalidActionError("Nothing happens.")
        self.on = state
        self.reach("touched")
        if state:
            self.reach("lit")
            self.finish(reward=2.0)
        return f"The lamp is {'on' if state else 'off'}."

    def state_key(self) -> str:
        return f"on={self.on}"

    def on_text(self, text):
        return ToolCall(name="switch", arguments={"state": True}) if text.lower() == "turn it on" else None


def _task(**kw):
    return ag.Task(id="t", env="x-v0", **kw)


def test_tool_schema_comes_from_hints_and_docstring():
    spec = {t.name: t for t in Lamp().tools}["switch"]
    assert spec.description == "Switch the lamp."
    props = spec.parameters["properties"]
    assert props["state"]["type"] == "boolean" and props["state"]["description"] == "True for on, False for off."
    assert props["note"]["default"] == ""
    assert spec.parameters["required"] == ["state"]
    rendered = spec.to_openai()
    assert rendered["type"] == "function" and rendered["function"]["name"] == "switch"


async def test_counter_example_runs_to_success():
    env = Counter()
    assert await env.reset(_task(data={"target": 5})) == "Reach 5. The value is 0."
    r1 = await env.step(ToolCall(name="add", arguments={"n": 2}))
    assert (r1.observation, r1.reward, r1.terminated, r1.valid, r1.state_key) == ("The value is 2.", 0.0, False, True, "2")
    r2 = await env.step("add(n=3)")
    assert r2.terminated and r2.reward == 1.0 and env.success and not r2.truncated


@pytest.mark.parametrize("action, problem", [
    (ToolCall(name="subtract", arguments={"n": 1}), "unknown tool 'subtract'"),
    (ToolCall(name="add", arguments={}), "missing argument 'n'"),
    (ToolCall(name="add", arguments={"n": "many"}), "argument 'n'"),
    (ToolCall(name="add", arguments={"n": True}), "expected a number, got a boolean"),
    ("add(n=True)", "expected a number, got a boolean"),
    (ToolCall(name="add", arguments={"n": 1, "m": 2}), "unexpected argument 'm'"),
    ("I am not sure what to do.", "no tool call found"),
    ('<tool_call>{"name": "add", "arguments": {n: 1}}</tool_call>', "not valid JSON"),
])
async def test_bad_actions_become_invalid_error_observations(action, problem):
    env = Counter()
    await env.reset(_task(data={"target": 5}))
    result = await env.step(action)
    assert not result.valid and not result.terminated
    assert problem in result.observation and "Valid tools: add." in result.observation
    assert env.value == 0


async def test_inadmissible_action_milestones_and_on_text():
    env = Lamp()
    await env.reset(_task(milestones=[Milestone(id="touched"), Milestone(id="lit")]))
    bad = await env.step(ToolCall(name="switch", arguments={"state": False}))
    assert (bad.observation, bad.valid, bad.milestones) == ("Nothing happens.", False, [])
    good = await env.step("turn it on")
    assert good.valid and good.milestones == ["touched", "lit"] and good.reward == 2.0 and good.terminated
    assert env.episode_reward == 2.0
    after = await env.step("turn it on")
    assert not after.valid and after.observation == "The episode is over."
    assert after.reward == 0.0 and after.milestones == [] and env.episode_reward == 2.0  # paid once only


async def test_milestones_count_only_the_first_time_and_must_be_declared():
    env = Lamp()
    await env.reset(_task(milestones=[Milestone(id="touched"), Milestone(id="lit")]))
    env.on = True
    first = await env.step(ToolCall(name="switch", arguments={"state": False}))
    assert first.milestones == ["touched"]
    env.task = _task(milestones=[Milestone(id="other")])
    with pytest.raises(ValueError, match="not declared"):
        await env.step(ToolCall(name="switch", arguments={"state": True}))


async def test_turn_limit_truncates_without_terminating():
    env = Counter()
    await env.reset(_task(data={"target": 100}, max_turns=2))
    assert not (await env.step("add(n=1)")).truncated
    last = await env.step("add(n=1)")
    assert last.truncated and not last.terminated


async def test_reset_clears_episode_state():
    env = Lamp()
    await env.reset(_task())
    await env.step("turn it on")
    await env.reset(_task())
    assert (env.turn, env.done, env.success, env.episode_reward, env.reached) == (0, False, False, 0.0, [])


async def test_closed_environment_refuses_use():
    async with Counter() as env:
        await env.reset(_task(data={"target": 1}))
    assert env.closed
    with pytest.raises(EnvironmentClosedError):
        await env.step("add(n=1)")
    with pytest.raises(EnvironmentClosedError):
        await env.reset(_task(data={"target": 1}))


async def test_step_before_reset_is_a_programming_error():
    with pytest.raises(RuntimeError, match="reset"):
        await Counter().step("add(n=1)")


def test_unknown_options_are_refused():
    with pytest.raises(TypeError, match="takes no options"):
        Counter(colour="red")


async def test_a_dict_action_is_a_tool_call():
    env = Counter()
    await env.reset(_task(data={"target": 5}))
    assert (await env.step({"name": "add", "arguments": {"n": 2}})).observation == "The value is 2."
    bad = await env.step({"tool": "add"})
    assert not bad.valid and 'needs "name" and "arguments"' in bad.observation and env.value == 2


def test_a_sync_reset_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"Sync.reset must be a coroutine: write `async def reset"):
        class Sync(ag.Environment):
            def reset(self, task):
                return "hi"


async def test_reset_and_state_key_of_the_wrong_type_name_the_method():
    class Silent(ag.Environment):
        async def reset(self, task):
            self.value = 0

    class IntKey(Counter):
        def state_key(self):
            return self.value

    with pytest.raises(TypeError, match="Silent.reset must return the first observation as a str, got NoneType"):
        await Silent().reset(_task())
    env = IntKey()
    await env.reset(_task(data={"target": 5}))
    with pytest.raises(TypeError, match=r"IntKey.state_key\(\) must return a str, got int 1"):
        await env.step("add(n=1)")


@pytest.mark.parametrize("reward", [float("nan"), float("inf"), "1", True])
async def test_a_reward_must_be_a_finite_number(reward):
    env = Counter()
    await env.reset(_task(data={"target": 5}))
    with pytest.raises(ValueError, match="a reward must be a finite number"):
        env.add_reward(reward)
    with pytest.raises(ValueError, match="a reward must be a finite number"):
        env.finish(reward=reward)
    assert not env.done  # a refused finish does not end the episode


async def test_finish_pays_once():
    env = Counter()
    await env.reset(_task(data={"target": 5}))
    env.finish(reward=1.0)
    with pytest.raises(RuntimeError, match="finish\\(\\) was called again"):
        env.finish(reward=1.0)


@pytest.mark.parametrize("body, problem", [
    ('@ag.tool(name="act")\n    async def a(self) -> str:\n        """A."""\n'
     '    @ag.tool(name="act")\n    async def b(self) -> str:\n        """B."""',
     "methods 'a' and 'b' are both the tool 'act'"),
    ('@ag.tool\n    async def step(self, x: int) -> str:\n        """S."""', "hides Environment.step"),
    ('@ag.tool\n    @staticmethod\n    async def s() -> str:\n        """S."""', "not a static or class method"),
    ('@staticmethod\n    @ag.tool\n    async def s() -> str:\n        """S."""', "not a static or class method"),
    ('@ag.tool\n    async def done(self) -> str:\n        """D."""', "hides Environment.done"),
])
def test_tool_definitions_that_would_misbehave_are_refused_at_class_definition(body, problem):
    with pytest.raises(TypeError, match=re.escape(problem)):
        exec(f"class Bad(ag.Environment):\n    {body}\n", {"ag": ag})


async def test_the_base_classes_episode_state_cannot_be_overwritten_by_a_subclass():
    class Game(ag.Environment):
        async def reset(self, task: ag.Task) -> str:
            return "Your move."

        @ag.tool
        async def move(self, to: str) -> str:
            """Move.

            Args:
                to: where.
            """
            if to == "end":
                self.done = True  # instead of finish(): would end the episode unpaid and unsuccessful
            else:
                self.turn = to  # a game's own "whose turn": would break the step counter
            return "Moved."

        def state_key(self) -> str:
            return ""

    env = Game()
    await env.reset(_task())
    with pytest.raises(AttributeError, match=r"Game.done is the base class's episode state and cannot be set "
                                             r"\(call self.finish\(reward\) to end the episode\)"):
        await env.step(ToolCall(name="move", arguments={"to": "end"}))
    with pytest.raises(AttributeError, match=r"Game.turn is the base class's episode state"):
        await env.step(ToolCall(name="move", arguments={"to": "red"}))
    assert (env.turn, env.done, env.success, env.episode_reward, env.reached) == (2, False, False, 0.0, [])


async def test_a_subclass_may_override_a_tool():
    class Loud(Counter):
        @ag.tool
        async def add(self, n: int) -> str:
            """Add n, loudly."""
            return (await super().add(n)).upper()

    env = Loud()
    await env.reset(_task(data={"target": 5}))
    assert [t.description for t in env.tools] == ["Add n, loudly."]
    assert (await env.step("add(n=2)")).observation == "THE VALUE IS 2."


def test_the_tool_description_stops_at_the_first_docstring_section():
    class Walker(ag.Environment):
        async def reset(self, task):
            return ""

        @ag.tool
        async def move(self, steps: int) -> str:
            """Move the agent.

            Returns:
                The new position.

            Args:
                steps: how far,
                    in cells.

            Raises:
                ValueError: never.
            """
            return ""

    (spec,) = Walker().tools
    assert spec.description == "Move the agent."
    assert spec.parameters["properties"]["steps"]["description"] == "how far, in cells."


async def test_a_tool_that_returns_nothing_is_named():
    class Forgetful(ag.Environment):
        async def reset(self, task):
            return ""

        @ag.tool
        async def poke(self) -> str:
            """Poke."""

    env = Forgetful()
    await env.reset(_task())
    with pytest.raises(TypeError, match="Forgetful.poke returned None; a tool returns the observation text"):
        await env.step("poke()")


def test_a_tool_without_docstring_or_type_hints_gets_a_warning():
    with pytest.warns(UserWarning) as caught:
        class Vague(ag.Environment):
            async def reset(self, task):
                return ""

            @ag.tool
            async def go(self, where) -> str:
                return ""

    (warning,) = caught
    assert str(warning.message) == (
        "tool 'go' (test_a_tool_without_docstring_or_type_hints_gets_a_warning.<locals>.Vague.go) has "
        "no docstring, so the model sees no description; and no type hint on where, so the model sees "
        "no type and any value passes")
    assert (warning.filename, warning.lineno) == (__file__, Vague.go.__code__.co_firstlineno)  # where to fix it


class Dial(ag.Environment):
    async def reset(self, task: ag.Task) -> str:
        return "A dial with settings 1 and 2, and a switch."

    @ag.tool
    def dial(self, setting: Literal[1, 2]) -> str:
        """Turn the dial."""
        return f"The dial is at {setting!r}."

    @ag.tool
    def flip(self, on: Literal[True, 0]) -> str:
        """A literal that holds a boolean takes booleans."""
        return f"Flipped {on!r}."

    @ag.tool
    def sequence(self, settings: list[Literal[1, 2]], weights: dict[str, float] | None = None,
                 steps: tuple[int, ...] = ()) -> str:
        """Turn the dial through several settings."""
        return f"Turned to {settings!r} {weights!r} {steps!r}."


@pytest.mark.parametrize("action, valid, observation", [
    (ToolCall(name="dial", arguments={"setting": 2}), True, "The dial is at 2."),
    (ToolCall(name="dial", arguments={"setting": True}), False, "expected a number, got a boolean"),
    ("dial(setting=True)", False, "expected a number, got a boolean"),
    (ToolCall(name="flip", arguments={"on": True}), True, "Flipped True."),
    (ToolCall(name="sequence", arguments={"settings": [1, 2], "weights": {"a": 0.5}, "steps": [3]}), True,
     "Turned to [1, 2] {'a': 0.5} (3,)."),
    (ToolCall(name="sequence", arguments={"settings": [1, True]}), False, "expected a number, got a boolean"),
    (ToolCall(name="sequence", arguments={"settings": [1], "weights": {"a": True}}), False, "expected a number"),
    (ToolCall(name="sequence", arguments={"settings": [1], "steps": [False]}), False, "expected a number"),
])
async def test_a_numeric_literal_refuses_booleans(action, valid, observation):
    env = Dial()
    await env.reset(_task())
    result = await env.step(action)
    assert result.valid == valid and observation in result.observation


async def test_a_step_past_the_turn_limit_runs_nothing():
    env = Lamp()
    await env.reset(_task(max_turns=1))
    assert not env.done
    first = await env.step(ToolCall(name="switch", arguments={"state": False}))
    assert first.truncated and not first.terminated and env.done  # over: a `while not env.done` loop ends
    after = await env.step("turn it on")
    assert (after.observation, after.valid, after.reward) == ("The episode is over.", False, 0.0)
    assert not env.on and env.turn == 1 and not env.success
