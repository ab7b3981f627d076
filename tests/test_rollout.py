"""The rollout engine: groups, records, limits, batching, error isolation, streaming, a real model."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import subprocess
import sys
import warnings
import time
from pathlib import Path

import pytest

import agentgym as ag
from agentgym.errors import ConfigError
from agentgym.parsing import parse_action
from agentgym.policies import Completion, SamplingParams
from agentgym.rollout import RolloutRunner, format_tool_call, horizon_schedule, summarize
from agentgym.store import RunStore
from agentgym.types import Message, ToolCall, ToolSpec


class Counter(ag.Environment):
    """Reach the target by adding numbers; ``data["crash_at"]``/``data["hang_at"]`` make turn k fail."""

    async def reset(self, task: ag.Task) -> str:
        if task.data.get("crash_on_reset"):
            raise OSError("reset exploded")
        self.value, self.target = 0, task.data["target"]
        return f"Reach {self.target}. The value is 0."

    @ag.tool
    async def add(self, n: int) -> str:
        """Add n to the value."""
        if self.turn == self.task.data.get("crash_at"):
            raise RuntimeError("boom")
        if self.turn == self.task.data.get("hang_at"):
            await asyncio.sleep(3600)
        if self.task.data.get("slow"):
            await asyncio.sleep(self.task.data["slow"])
        self.value += n
        if self.value == self.target:
            self.finish(reward=1.0)
        return f"The value is {self.value}."

    def state_key(self) -> str:
        return str(self.value)

    def expert_action(self) -> ToolCall:
        return ToolCall(name="add", arguments={"n": 1})

    def random_action(self, rng) -> str:
        return f"add(n={rng.randint(1, 2)})"


def tasks(k: int = 3, **data) -> list[ag.Task]:
    return [ag.Task(id=f"c{i}", env="counter-test-v0", data={"target": 3, **data}) for i in range(k)]


class CannedPolicy:
    """A stand-in for a model server: answers every conversation with ``text``; fails its first ``fail`` calls."""

    def __init__(self, text: str = "add(n=1)", fail: int = 0, delay: float = 0.0) -> None:
        self.text, self.fail, self.delay = text, fail, delay
        self.calls: list[int] = []
        self.tools_seen: list[list[str] | None] = []
        self.max_batch_size = 16

    async def generate(self, conversations: list[list[Message]], tools: list[ToolSpec] | None,
                       params: SamplingParams) -> list[Completion]:
        self.calls.append(len(conversations))
        self.tools_seen.append(None if tools is None else [t.name for t in tools])
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail > 0:
            self.fail -= 1
            raise ConnectionError("server went away")
        return [Completion(text=self.text, prompt_ids=[len(c)], token_ids=[7, 8], logprobs=[-0.5, -0.25],
                           finish_reason="stop") for c in conversations]

    async def aclose(self) -> None:
        pass


async def test_groups_share_ids_and_stream_into_the_store(tmp_path):
    runner = RolloutRunner("expert", Counter, n=3, store=tmp_path / "run")
    seen = []
    result = await runner.run(tasks(4), on_trajectory=seen.append)
    trajs = result.trajectories
    assert len(trajs) == 12 and len(seen) == 12
    assert [t.task_id for t in trajs] == [f"c{i}" for i in range(4) for _ in range(3)]
    for i in range(4):
        group = trajs[3 * i:3 * i + 3]
        assert len({t.group_id for t in group}) == 1
        assert len({t.id for t in group}) == 3
    assert len({t.group_id for t in trajs}) == 4
    assert all(t.success and t.terminated and not t.truncated and t.reward == 1.0 for t in trajs)
    stored = RunStore(tmp_path / "run").load_trajectories("rollout")
    assert sorted(t.id for t in stored) == sorted(t.id for t in trajs)


async def test_steps_record_state_messages_action_and_result():
    result = await RolloutRunner("expert", Counter).run(tasks(1))
    (traj,) = result.trajectories
    assert [s.state_key for s in traj.steps] == ["0", "1", "2"]  # the state acted from, not the one reached
    first = traj.steps[0]
    assert [m.role for m in first.messages] == ["system", "user"]
    assert first.messages[1].content == "Reach 3. The value is 0."
    assert [m.role for m in traj.steps[2].messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert first.action == ToolCall(name="add", arguments={"n": 1})
    assert first.response == format_tool_call(first.action)
    assert first.result.observation == "The value is 1." and first.result.state_key == "1"
    assert set(first.timings) == {"policy_s", "env_s"}
    assert first.response_ids is None and first.logprobs is None  # a scripted policy has no tokens


def test_tool_calls_render_text_as_written_and_parse_back():
    call = ToolCall(name="open", arguments={"title": "Fīrozābād"})
    text = format_tool_call(call)
    assert "Fīrozābād" in text and "\\u" not in text
    assert parse_action(text, ["open"]).call == call


async def test_random_policy_is_reproducible_per_seed():
    run = lambda seed: RolloutRunner("random", Counter, n=2, seed=seed).run(tasks(2, target=7))  # noqa: E731
    a, b, c = await run(1), await run(1), await run(2)
    actions = lambda r: [[s.response for s in t.steps] for t in r.trajectories]  # noqa: E731
    assert actions(a) == actions(b)
    assert actions(a) != actions(c)
    assert [t.seed for t in a.trajectories] == [t.seed for t in b.trajectories]


async def test_parse_errors_and_plain_text_are_recorded_not_raised():
    policy = CannedPolicy(text='<tool_call>{"name": "add", "arguments": {"n": </tool_call>')
    result = await RolloutRunner(policy, Counter, max_turns=2).run(tasks(1))
    step = result.trajectories[0].steps[0]
    assert step.action is None and "not valid JSON" in step.parse_error
    assert not step.valid and step.result.observation.startswith("Error:")
    assert result.summary()["invalid_action_rate"] == 1.0
    result = await RolloutRunner(CannedPolicy(text="I would like to add one."), Counter, max_turns=1).run(tasks(1))
    assert result.trajectories[0].steps[0].parse_error == "no tool call found in the response"


async def test_turn_limit_and_horizon_schedule():
    result = await RolloutRunner("random", Counter, max_turns=2).run(tasks(2, target=100))
    assert all(t.num_turns == 2 and t.truncated and not t.terminated for t in result.trajectories)
    schedule = {1: 1, 2: 3}
    runner = RolloutRunner("random", Counter, max_turns=schedule.__getitem__)
    with pytest.raises(ConfigError, match="step=k"):
        await runner.run(tasks(1, target=100))
    assert [t.num_turns for t in (await runner.run(tasks(2, target=100), step=2)).trajectories] == [3, 3]
    # the task's own limit still applies
    short = [ag.Task(id="s", env="counter-test-v0", data={"target": 100}, max_turns=2)]
    assert (await runner.run(short, step=2)).trajectories[0].num_turns == 2


def test_horizon_schedule_follows_scalinginter_rl():
    pytest.importorskip("agentgym.credit")
    h = horizon_schedule([10, 20, 30], 100)
    assert [h(k) for k in (1, 100, 101, 200, 201, 1000)] == [10, 10, 20, 20, 30, 30]  # TV-I


async def test_crashing_and_hanging_environments_fail_alone():
    mixed = (tasks(2) + tasks(1, crash_at=2) + tasks(1, hang_at=1) + tasks(1, crash_on_reset=True))
    for i, t in enumerate(mixed):
        t.id = f"t{i}"
    started = time.perf_counter()
    result = await RolloutRunner("expert", Counter, step_timeout=0.3, concurrency=8).run(mixed)
    assert time.perf_counter() - started < 5
    ok, ok2, crashed, hung, no_reset = result.trajectories
    assert ok.success and ok2.success and ok.error is None
    assert crashed.error == "environment step raised RuntimeError: boom" and crashed.truncated
    assert crashed.num_turns == 1  # the step before the crash is kept
    assert hung.error == "environment step timed out after 0.3 s" and hung.truncated and not hung.steps
    call = '<tool_call>{"name": "add", "arguments": {"n": 1}}</tool_call>'  # the expert's action, as text
    assert crashed.metadata["failed_response"] == hung.metadata["failed_response"] == call
    assert "failed_response" not in ok.metadata and "failed_response" not in no_reset.metadata
    assert no_reset.error == "environment reset raised OSError: reset exploded"
    summary = result.summary()
    assert summary["failed"] == 3 and summary["episodes"] == 5
    assert summary["failures"]["environment step raised RuntimeError: boom"] == 1
    # where the environment's code raised, and how it got there, for its author
    line = inspect.getsourcelines(Counter.add)[1] + 4  # `raise RuntimeError("boom")`
    assert summary["failed_at"] == {"environment step raised RuntimeError: boom": f"test_rollout.py, line {line}, in add",
                                    "environment reset raised OSError: reset exploded":
                                        f"test_rollout.py, line {inspect.getsourcelines(Counter.reset)[1] + 2}, in reset"}
    assert crashed.metadata["traceback"].startswith("Traceback (most recent call last):")
    assert crashed.metadata["traceback"].endswith('raise RuntimeError("boom")\nRuntimeError: boom\n')
    assert "traceback" not in hung.metadata and "error_at" not in ok.metadata  # a time limit raised nothing there


class Sleepy(Counter):
    """A Counter whose tool blocks the event loop (``time.sleep``) for ``data["block"]`` seconds."""

    @ag.tool(name="add")
    def add_slowly(self, n: int) -> str:
        """Add n to the value, slowly."""
        time.sleep(self.task.data["block"])
        self.value += n
        if self.value == self.target:
            self.finish(reward=1.0)
        return f"The value is {self.value}."


async def test_a_step_that_blocks_past_the_step_limit_ends_its_episode_when_it_returns():
    result = await RolloutRunner("expert", Sleepy, step_timeout=0.2).run(tasks(1, block=0.4) + tasks(1, block=0.0))
    blocked, quick = result.trajectories
    assert re.match(r"environment step took 0\.\d s, over the 0.2 s step limit, without awaiting", blocked.error)
    assert blocked.num_turns == 1 and blocked.steps[0].result.observation == "The value is 1."  # the step is kept
    assert quick.error is None and quick.num_turns == 3


async def test_episode_time_limit_keeps_collected_steps():
    result = await RolloutRunner("expert", Counter, episode_timeout=0.25, step_timeout=5).run(tasks(2, target=50, slow=0.1))
    for t in result.trajectories:
        assert t.error == "episode timed out after 0.25 s" and t.truncated
        assert 1 <= t.num_turns <= 3


class BadClose(Counter):
    """A Counter whose ``aclose`` hangs (``data["close"] == "hang"``) or raises (``"raise"``)."""

    async def aclose(self) -> None:
        if self.task.data.get("close") == "hang":
            await asyncio.sleep(3600)
        if self.task.data.get("close") == "raise":
            raise OSError("socket already gone")
        await super().aclose()


async def test_closing_runs_under_the_step_limit_and_keeps_the_episode():
    mixed = tasks(1, close="hang") + tasks(1, close="raise") + tasks(1, close="hang", target=50, slow=0.1)
    for i, t in enumerate(mixed):
        t.id = f"t{i}"
    started = time.perf_counter()
    runner = RolloutRunner("expert", BadClose, step_timeout=0.3, episode_timeout=0.5)
    hung, raised, late = (await asyncio.wait_for(runner.run(mixed), 10)).trajectories  # a hung close fails here
    assert time.perf_counter() - started < 5
    assert hung.success and hung.error is None and hung.num_turns == 3
    assert hung.metadata["close_error"] == "aclose() timed out after 0.3 s"
    assert raised.success and raised.metadata["close_error"] == "OSError: socket already gone"
    # the episode limit passed first; closing still gets its own step limit
    assert late.error == "episode timed out after 0.5 s" and late.num_turns >= 2
    assert late.metadata["close_error"] == "aclose() timed out after 0.3 s"


class SlowCleanup(ag.Environment):
    """A step that hangs, then takes a while to clean up once cancelled (a killed subprocess)."""

    async def reset(self, task: ag.Task) -> str:
        return "go"

    @ag.tool
    async def wait(self) -> str:
        """Wait."""
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.3)
        return "done"

    def expert_action(self) -> ToolCall:
        return ToolCall(name="wait", arguments={})


async def test_cancelling_the_run_while_a_timed_out_step_cleans_up_cancels_it():
    runner = RolloutRunner("expert", SlowCleanup, step_timeout=0.2, concurrency=1)
    run = asyncio.ensure_future(runner.run(tasks(5)))
    await asyncio.sleep(0.3)  # the step limit fired at 0.2 s; the step is still cleaning up
    started = time.perf_counter()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):  # not recorded as a timeout and played on
        await asyncio.wait_for(run, 5)
    assert time.perf_counter() - started < 1.0


class Stubborn(SlowCleanup):
    """A step and a close that catch their first cancellation and return as if nothing happened."""

    async def _sleep_through_one_cancel(self) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if getattr(self, "swallowed", False):
                raise
            self.swallowed = True

    @ag.tool
    async def wait(self) -> str:
        """Wait."""
        await self._sleep_through_one_cancel()
        return "done anyway"

    async def aclose(self) -> None:
        self.swallowed = False
        await self._sleep_through_one_cancel()


async def test_a_step_that_swallows_its_timeout_still_ends_the_episode():
    runner = RolloutRunner("expert", Stubborn, step_timeout=0.2)
    started = time.perf_counter()
    (traj,) = (await asyncio.wait_for(runner.run(tasks(1)), 5)).trajectories  # unlimited steps would hang
    assert time.perf_counter() - started < 1.5
    assert traj.error == "environment step timed out after 0.2 s" and traj.truncated and not traj.steps
    assert traj.metadata["close_error"] == "aclose() timed out after 0.2 s"


async def test_policy_failures_are_retried_then_recorded():
    flaky = CannedPolicy(fail=2)
    result = await RolloutRunner(flaky, Counter, policy_retries=2, retry_backoff=0.01).run(tasks(1))
    assert result.trajectories[0].success
    broken = CannedPolicy(fail=10**6)
    result = await RolloutRunner(broken, Counter, policy_retries=1, retry_backoff=0.01).run(tasks(2))
    for t in result.trajectories:
        assert t.error == "policy failed after 2 attempts: ConnectionError: server went away" and t.truncated


class Picky(CannedPolicy):
    """A server that rejects every batch holding a conversation that mentions POISON (HTTP 400)."""

    async def generate(self, conversations, tools, params):
        if any("POISON" in m.content for c in conversations for m in c):
            self.calls.append(len(conversations))
            raise ValueError("HTTP 400: maximum context length exceeded")
        return await super().generate(conversations, tools, params)


async def test_a_prompt_the_back_end_rejects_fails_only_its_own_episode():
    mixed = tasks(3) + [ag.Task(id="poison", env="counter-test-v0", prompt="POISON", data={"target": 3})]
    policy = Picky()
    runner = RolloutRunner(policy, Counter, batch_size=8, batch_wait=0.05, retry_backoff=0.01)
    *good, bad = (await runner.run(mixed)).trajectories
    assert policy.calls[0] == 4  # the first turn went out as one batch, and failed as one
    assert all(t.success and t.error is None for t in good)  # their retries went alone
    assert bad.error == "policy failed after 3 attempts: ValueError: HTTP 400: maximum context length exceeded"


class BadInfo(Counter):
    """A Counter whose step info holds a value JSON cannot store, for task ``bad``."""

    async def add(self, n: int) -> str:
        if self.task.id == "bad":
            self.add_info(count=object())
        return await super().add(n)


async def test_a_trajectory_the_store_cannot_write_is_reported_and_the_run_goes_on(tmp_path):
    mixed = [ag.Task(id="bad", env="counter-test-v0", data={"target": 1})] + tasks(3, slow=0.02)
    result = await RolloutRunner("expert", BadInfo, store=tmp_path).run(mixed)
    bad, *good = result.trajectories
    assert bad.success and "store_error" in bad.metadata and all(t.success for t in good)
    assert sorted(t.task_id for t in RunStore(tmp_path).load_trajectories()) == ["c0", "c1", "c2"]
    (reason, count), = result.summary()["store_errors"].items()
    assert count == 1 and reason == bad.metadata["store_error"]


async def test_a_task_listed_twice_gets_its_own_seeds_and_samples():
    once = (await RolloutRunner("random", Counter, n=2).run(tasks(1, target=50))).trajectories
    twice = (await RolloutRunner("random", Counter, n=2).run(tasks(1, target=50) * 2)).trajectories
    assert [t.seed for t in twice[:2]] == [t.seed for t in once]  # the first listing keeps its seeds
    assert len({t.seed for t in twice}) == 4
    assert [s.response for s in twice[0].steps] != [s.response for s in twice[2].steps]


async def test_a_schedule_that_gives_no_turns_is_a_configuration_error():
    runner = RolloutRunner("random", Counter, max_turns=lambda step: 10 - step)
    with pytest.raises(ConfigError, match="gave 0 turns at step 10"):
        await runner.run(tasks(1), step=10)


async def test_concurrent_generation_requests_are_batched():
    policy = CannedPolicy(delay=0.05)
    result = await RolloutRunner(policy, Counter, n=4, batch_size=8, batch_wait=0.02).run(tasks(2))
    assert all(t.success for t in result.trajectories)
    assert max(policy.calls) == 8 and sum(policy.calls) == 8 * 3  # 8 episodes, 3 turns each
    step = result.trajectories[0].steps[1]
    assert step.response_ids == [7, 8] and step.logprobs == [-0.5, -0.25] and step.prompt_ids == [4]


async def test_an_unknown_environment_fails_up_front_and_one_that_cannot_start_fails_its_episode():
    from agentgym.errors import UnknownEnvironmentError

    with pytest.raises(UnknownEnvironmentError, match="unknown environment 'household-v1'. Did you mean 'household-v0'"):
        await RolloutRunner("expert").run([ag.Task(id="x", env="household-v1")])
    with pytest.raises(UnknownEnvironmentError, match="unknown environment 'nope-v0'"):
        RolloutRunner("expert", "nope-v0")
    with pytest.raises(TypeError, match="tasks must be a list of Task"):
        await RolloutRunner("expert").run(ag.Task(id="x", env="household-v0"))
    suite = ag.load_tasks("household-v0", "test-unseen")[:2]
    assert len((await RolloutRunner("expert").run(t for t in suite)).trajectories) == 2  # a generator, read once

    def broken():
        raise OSError("no display")

    result = await RolloutRunner("expert", broken).run([ag.Task(id="x", env="household-v0")])
    error = result.trajectories[0].error
    assert error.startswith("cannot create environment") and error.endswith("OSError: no display")


def test_bad_configuration_names_the_fix():
    with pytest.raises(ConfigError, match="n \\(samples per task\\) must be positive, got 0"):
        RolloutRunner("expert", Counter, n=0)
    with pytest.raises(ConfigError, match="summarization needs a model policy"):
        RolloutRunner("expert", Counter, context="summary:100")


@pytest.mark.parametrize("tool_schema", [True, False])
async def test_tool_schema_off_hides_the_specs_but_actions_still_parse(tool_schema):
    policy = CannedPolicy("add(n=1)")
    runner = RolloutRunner(policy, Counter, n=1, tool_schema=tool_schema)
    result = await runner.run(tasks(1))
    assert policy.tools_seen and all(seen == (["add"] if tool_schema else None) for seen in policy.tools_seen)
    assert result.trajectories[0].success and all(s.action is not None for s in result.trajectories[0].steps)
    # what the model was shown besides the messages: the specs, as the chat template got them
    shown = [spec.to_openai() for spec in Counter().tools] if tool_schema else None
    assert result.trajectories[0].metadata.get("tools") == shown
    unrecorded = await RolloutRunner(policy, Counter, n=1, record_messages=False).run(tasks(1))
    assert "tools" not in unrecorded.trajectories[0].metadata


def test_summarize_counts_failures():
    assert summarize([])["episodes"] == 0


@pytest.mark.slow
async def test_smollm2_household_rollout_records_exact_tokens(smollm2):
    try:
        ag.make("household-v0")
    except Exception as exc:  # pragma: no cover - the environment is developed in parallel
        pytest.skip(f"household-v0 is not available: {exc}")
    suite = ag.load_tasks("household-v0", "test-unseen")[:2]
    runner = RolloutRunner(smollm2, n=2, max_turns=2, sampling=SamplingParams(temperature=1.0, max_new_tokens=16),
                           env_options={"show_commands": False})  # shorter prompts keep the test quick
    result = await runner.run(suite)
    assert len(result.trajectories) == 4 and all(t.error is None for t in result.trajectories)
    assert max(result.batch_sizes) > 1  # the four episodes' turns were generated together
    tools = ag.make("household-v0").tools
    tok = smollm2.tokenizer
    for traj in result.trajectories:
        assert 1 <= traj.num_turns <= 2
        for step in traj.steps:
            assert tok.decode(step.response_ids, skip_special_tokens=True) == step.response
            assert len(step.logprobs) == len(step.response_ids) <= 16
            assert all(lp <= 0 for lp in step.logprobs)
            assert step.prompt_ids == smollm2.render(step.messages, tools)
            assert step.state_key is not None and step.result is not None


async def test_a_prompt_past_the_model_context_ends_its_episode_and_no_other(smollm2):
    from agentgym.errors import ContextLengthError

    context = smollm2.context_length
    with pytest.raises(ContextLengthError, match=f"past the model's context of {context} tokens"):
        smollm2.generate_tokens_sync([[1] * (context - 2)], SamplingParams(max_new_tokens=4))
    long = ag.Task(id="long", env="counter-test-v0", prompt="word " * context, data={"target": 3})
    runner = RolloutRunner(smollm2, Counter, max_turns=1, sampling=SamplingParams(temperature=1.0, max_new_tokens=4))
    short, too_long = (await runner.run([*tasks(1), long])).trajectories
    assert short.error is None and short.num_turns == 1 and not short.overlong
    # no system failure: the episode ran out of context, and credit assignment treats it as overlong
    assert too_long.num_turns == 0 and too_long.truncated and too_long.overlong and too_long.error is None
    # refused before batching, once: not a failed batch that its mates retry, nor retried itself
    reason = too_long.metadata["context_full"]
    assert reason.startswith("the prompt has ") and "asks for 4 more, past the model's context" in reason


@pytest.mark.slow
async def test_a_seeded_smollm2_rollout_samples_the_same_tokens_whatever_the_batching(smollm2):
    suite = ag.load_tasks("household-v0", "test-unseen")[:2]

    async def sampled(batch_size: int, seed: int) -> list[list[list[int]]]:
        runner = RolloutRunner(smollm2, n=2, max_turns=2, seed=seed, batch_size=batch_size,
                               sampling=SamplingParams(temperature=1.0, max_new_tokens=8),
                               env_options={"show_commands": False})
        result = await runner.run(suite)
        assert max(result.batch_sizes) == batch_size
        return [[s.response_ids for s in t.steps] for t in result.trajectories]

    together = await sampled(4, seed=7)
    assert await sampled(1, seed=7) == together
    assert await sampled(4, seed=8) != together


async def test_a_failing_callback_stops_the_run_and_the_store_keeps_what_finished(tmp_path):
    def explode(traj):
        raise ValueError("callback bug")

    runner = RolloutRunner("expert", Counter, n=2, store=tmp_path)
    with pytest.raises(ValueError, match="callback bug"):
        await runner.run(tasks(3), on_trajectory=explode)
    assert 1 <= len(RunStore(tmp_path).load_trajectories()) <= 6
    assert (await runner.run(tasks(1))).trajectories[0].success  # the runner is usable again


async def test_scripted_runs_can_skip_message_records():
    result = await RolloutRunner("expert", Counter, record_messages=False).run(tasks(1))
    assert all(s.messages is None for s in result.trajectories[0].steps) and result.trajectories[0].success


class NoHooks(ag.Environment):
    """An environment without expert_action() or random_action(), like the README's first example."""

    async def reset(self, task: ag.Task) -> str:
        return "nothing to do"

    def state_key(self) -> str:
        return ""


def flat(output: str) -> str:
    """CLI output as one line, without the frame rich draws around errors."""
    return " ".join(output.replace("│", " ").split())


def test_rollout_command_writes_a_run_directory(tmp_path):
    from typer.testing import CliRunner

    from agentgym.cli import app

    try:
        ag.make("household-v0")
    except Exception as exc:  # pragma: no cover - developed in parallel
        pytest.skip(f"household-v0 is not available: {exc}")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["rollout", "--env", "household-v0", "--suite", "test-unseen", "--policy", "expert",
                                   "--n", "2", "--limit", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "success rate        100.0%" in res.output and "failures            0" in res.output
    store = RunStore(out)
    assert len(store.load_trajectories()) == 6
    assert store.read_config()["policy"] == "expert"
    assert store.load_metrics()[0]["success_rate"] == 1.0
    # the same --out again would mix two runs in one file: refused, the first run untouched
    again = CliRunner().invoke(app, ["rollout", "--policy", "expert", "--limit", "1", "--out", str(out)])
    assert again.exit_code == 2 and "already holds files" in flat(again.output)
    assert len(store.load_trajectories()) == 6
    # an environment's options, as a training config's env.options: here a row limit too small for a task's answer
    small = CliRunner().invoke(app, ["rollout", "--env", "sql-v0", "--suite", "test", "--policy", "expert", "--limit", "1",
                                     "--env-option", "max_rows=2", "--env-option", "dsn=host=h password=p #1: x",
                                     "--env-option", "timeout=1e1", "--out", str(tmp_path / "small")])
    assert small.exit_code == 1 and "the gold result has more than 2 rows; raise max_rows" in flat(small.output)
    # a number where the environment takes one (1e1 too, which YAML reads as text); text as typed where it
    # takes text (YAML would cut '#1: x')
    assert RunStore(tmp_path / "small").read_config()["env_options"] == {"max_rows": 2, "dsn": "host=h password=p #1: x",
                                                                         "timeout": 10.0}


@pytest.mark.parametrize("args, message, code", [
    (["--limit", "0"], "Invalid value for '--limit'", 2),
    (["--n", "0"], "Invalid value for '--n'", 2),
    (["--step-timeout", "0"], "Invalid value for '--step-timeout': 0 is not a positive number", 2),
    (["--step-timeout", "nan"], "Invalid value for '--step-timeout': nan is not a positive number", 2),
    (["--context", "window:abc"], "Invalid value for '--context': bad context spec 'window:abc': its numbers must be", 2),
    (["--context", "summary:100:x"], "bad context spec 'summary:100:x'", 2),  # as typed: no emoji for :100:
    (["--policy", "hf:/nowhere/[bold]m[/bold]"], "/nowhere/[bold]m[/bold] does not exist", 2),
    (["--policy", "gpt"], "Invalid value for '--policy': unknown policy 'gpt'", 2),
    (["--context", "summary:100"], "Invalid value for '--context': summarization needs a model policy", 2),
    (["--env-option", "nope=1"], "--env-option: got an unexpected keyword argument 'nope'; HouseholdEnv takes", 2),
    (["--env", "sql-v0", "--suite", "test", "--env-option", "max_rows=true"],
     "--env-option: max_rows=True is not a valid int", 2),
    (["--env", "sql-v0", "--suite", "test", "--env-option", "timeout=0"],
     "--env-option: SQLEnv(timeout=0.0) raised ConfigError: timeout must be positive, got 0.0", 2),
    (["--env", "tiny-relay-v0", "--suite", "test", "--plugin", "agentgym.trainers.tiny:register_relay", "--context",
      "summary:512", "--policy", "smollm2"],
     "Invalid value for '--context': summarization works on one conversation, and tiny-relay-v0 has several", 2),
    (["--env-option", "difficulty"], "--env-option expects KEY=VALUE", 2),
    (["--env", "no-hooks-v0", "--suite", "test"], "Invalid value for '--policy': the expert policy needs "
                                                  "NoHooks.expert_action(), which no-hooks-v0 does not define", 2),
])
def test_a_rejected_rollout_command_says_why_and_leaves_no_run_directory(tmp_path, args, message, code):
    from typer.testing import CliRunner

    from agentgym.cli import app

    ag.register("no-hooks-v0", NoHooks, suites={"test": lambda: [ag.Task(id="t", env="no-hooks-v0")]})

    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["rollout", "--policy", "expert", "--limit", "1", "--out", str(out), *args])
    assert res.exit_code == code and message in flat(res.output), res.output
    assert not out.exists()


def test_rollout_without_suite_takes_the_environments_held_out_suite(tmp_path):
    from typer.testing import CliRunner

    from agentgym.cli import app

    out = tmp_path / "run"  # sql-v0 has no test-unseen suite: its held-out suite is test
    res = CliRunner().invoke(app, ["rollout", "--env", "sql-v0", "--policy", "expert", "--limit", "1", "--out", str(out)])
    assert res.exit_code == 0 and "of sql-v0/test with expert" in flat(res.output), res.output
    assert RunStore(out).read_config()["suite"] == "test"


def test_rollouts_started_in_the_same_second_get_a_default_directory_each(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from agentgym.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20261205-120000")  # the same second, for sure
    for _ in range(2):
        res = CliRunner().invoke(app, ["rollout", "--env", "household-v0", "--suite", "test-seen", "--policy", "expert",
                                       "--limit", "1"])
        assert res.exit_code == 0, res.output
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["rollout-household-v0-test-seen-expert-20261205-120000",
                    "rollout-household-v0-test-seen-expert-20261205-120000-2"]
    assert [len(RunStore(tmp_path / "runs" / r).load_trajectories()) for r in runs] == [1, 1]


PLUGIN = '''
import agentgym as ag


class Steps(ag.Environment):
    async def reset(self, task):
        self.left = task.data["steps"]
        return f"{self.left} steps to go."

    @ag.tool
    async def walk(self) -> str:
        """Take one step."""
        self.left -= 1
        if not self.left:
            self.finish(reward=1.0)
        return f"{self.left} steps to go."

    def expert_action(self):
        return "walk()"


def register():
    ag.register("steps-v0", Steps,
                suites={"test": lambda: [ag.Task(id=f"s{i}", env="steps-v0", data={"steps": i + 1}) for i in range(3)]})
'''


def test_rollout_loads_an_uninstalled_plugin_from_the_current_directory(tmp_path):
    (tmp_path / "my_envs.py").write_text(PLUGIN)
    command = [str(Path(sys.executable).parent / "agentgym"), "rollout", "--env", "steps-v0", "--policy", "expert",
               "--out", "run", "--no-progress"]  # the script, not python -m: its sys.path lacks the directory
    ran = subprocess.run([*command, "--plugin", "my_envs:register"], cwd=tmp_path, capture_output=True, text=True)
    assert ran.returncode == 0 and "3 episodes of steps-v0/test with expert" in flat(ran.stdout), ran.stdout + ran.stderr
    assert RunStore(tmp_path / "run").read_config()["plugins"] == ["my_envs:register"]
    (tmp_path / "needs_dep.py").write_text("import not_installed_dep\n")
    (tmp_path / "bad_register.py").write_text("def register():\n    raise ValueError('no suites')\n")
    listed = subprocess.run([command[0], "envs", "--plugin", "my_envs:register"], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "COLUMNS": "200"})
    assert listed.returncode == 0 and "steps-v0" in listed.stdout and "walk" in listed.stdout, listed.stderr
    (tmp_path / "bare_envs.py").write_text("import agentgym as ag\nfrom my_envs import Steps\n"
                                           "ag.register('bare-v0', Steps)\n")
    bare = subprocess.run([*command[:-3], "--out", "bare", "--plugin", "bare_envs", "--env", "bare-v0"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert bare.returncode == 2 and "environment 'bare-v0' has no task suites: give it some where it is registered" \
        in flat(bare.stderr), bare.stderr
    (tmp_path / "none.jsonl").write_text("")
    (tmp_path / "empty_envs.py").write_text("import agentgym as ag\nfrom my_envs import Steps\n"
                                            "ag.register('empty-v0', Steps, suites={'test': 'none.jsonl'})\n")
    empty = subprocess.run([*command[:-3], "--out", "empty", "--plugin", "empty_envs", "--env", "empty-v0"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert empty.returncode == 2 and "task suite 'test' of empty-v0 holds no tasks" in flat(empty.stderr), empty.stderr
    assert not (tmp_path / "empty").exists()
    for plugin, message in [
        ("my_envz", "--plugin: no module 'my_envz' here or installed"),
        ("my_envs:setup", "--plugin: 'my_envs' has no function 'setup'"),
        ("needs_dep", "--plugin: importing 'needs_dep' failed: ModuleNotFoundError: No module named 'not_installed_dep'"),
        ("bad_register:register", "--plugin: bad_register:register() failed: ValueError: no suites"),
        (":register", "--plugin: ':register' is not 'module' or 'module:function'"),
        ("./my_envs.py", "--plugin: './my_envs.py' is not 'module' or 'module:function'"),
    ]:
        bad = subprocess.run([*command, "--plugin", plugin], cwd=tmp_path, capture_output=True, text=True)
        assert bad.returncode == 2 and message in flat(bad.stderr), bad.stderr


def test_a_plugin_that_registers_nothing_when_imported_says_which_function_to_name(tmp_path, monkeypatch):
    from agentgym.registry import load_plugin

    (tmp_path / "quiet_envs.py").write_text(PLUGIN)  # registers in register() only
    (tmp_path / "loud_envs.py").write_text("import agentgym as ag\nfrom quiet_envs import Steps\n"
                                           "ag.register('loud-v0', Steps)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(RuntimeWarning, match="importing 'quiet_envs' registered no environment; does it register "
                                            "them in a function\\? then name it: quiet_envs:register"):
        load_plugin("quiet_envs", "--plugin")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_plugin("loud_envs", "--plugin")
        load_plugin("quiet_envs:register", "--plugin")
        load_plugin("quiet_envs:register", "--plugin")  # again (a second run in one process): registers again
    with pytest.warns(RuntimeWarning, match=r"--plugin: os:getcwd\(\) registered no environment"):
        load_plugin("os:getcwd", "--plugin")
    (tmp_path / "guarded_envs.py").write_text("import agentgym as ag\nfrom agentgym import registry\n"
                                              "from quiet_envs import Steps\n"
                                              "def register():\n"
                                              "    if 'guarded-v0' not in [s.id for s in registry.registered()]:\n"
                                              "        ag.register('guarded-v0', Steps)\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_plugin("guarded_envs:register", "--plugin")
        load_plugin("guarded_envs:register", "--plugin")  # registers nothing the second time: no warning


def test_a_plugin_directory_never_hides_an_installed_package(tmp_path):
    (tmp_path / "my_envs.py").write_text(PLUGIN)
    (tmp_path / "peft.py").write_text("raise RuntimeError('the peft.py next to the plugin was imported')\n")
    code = ("from agentgym.registry import load_plugin; load_plugin('my_envs:register'); import peft, my_envs; "
            "print(peft.__file__, my_envs.__file__)")
    ran = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-2000:]
    peft_file, plugin_file = ran.stdout.split()
    assert "site-packages" in peft_file and plugin_file == str(tmp_path / "my_envs.py")


def test_env_option_text_is_read_as_yaml_except_where_the_parameter_takes_text():
    from agentgym._cli_rollout import _env_options
    from agentgym.registry import spec

    household, search, sql = (spec(e).load() for e in ("household-v0", "search-v0", "sql-v0"))
    assert _env_options(["difficulty={max_receptacles: 3}"], household) == {"difficulty": {"max_receptacles": 3}}
    assert _env_options(["difficulty=easy"], household) == {"difficulty": "easy"}
    assert _env_options(['corpus="~/c #1.jsonl"', "top_k=3"], search) == {"corpus": "~/c #1.jsonl", "top_k": 3}
    assert _env_options(["corpus=null"], search) == {"corpus": None}
    assert _env_options(["dsn=#1 host=h"], sql) == {"dsn": "#1 host=h"}  # YAML would read a comment
