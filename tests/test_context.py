"""Context managers: full history, sliding window, and SUPO summarization (docs/ALGORITHMS.md §4)."""

from __future__ import annotations

import re

import pytest

import agentgym as ag
from agentgym.context import (DEFAULT_SUMMARY_INSTRUCTION, SUMMARY_PREFIX, FullHistory, SlidingWindow, Summarize,
                              context_factory)
from agentgym.errors import ConfigError
from agentgym.policies import Completion, SamplingParams
from agentgym.rollout import DEFAULT_SYSTEM_PROMPT, RolloutRunner
from agentgym.types import Message, ToolSpec

S1 = [Message(role="system", content="sys"), Message(role="user", content="task")]


def turn(i: int) -> tuple[Message, Message]:
    return Message(role="assistant", content=f"a{i}"), Message(role="user", content=f"o{i}")


def contents(messages: list[Message]) -> list[str]:
    return [m.content for m in messages]


def test_full_history_keeps_every_turn():
    ctx = FullHistory()
    ctx.reset(S1)
    for i in range(3):
        assert ctx.add_turn(*turn(i)) == "continue"
    assert contents(ctx.messages()) == ["sys", "task", "a0", "o0", "a1", "o1", "a2", "o2"]
    assert ctx.segment == 0


def test_sliding_window_keeps_the_initial_prompt_and_last_k_turns():
    ctx = SlidingWindow(k=2)
    ctx.reset(S1)
    for i in range(4):
        ctx.add_turn(*turn(i))
    assert contents(ctx.messages()) == ["sys", "task", "a2", "o2", "a3", "o3"]


def tokens_by_message(messages: list[Message]) -> int:
    """Token counts given in the content: 'a:200' is a 200-token message; others count 0."""
    return sum(int(m.content.split(":")[1]) if re.fullmatch(r"\w+:\d+", m.content) else 0 for m in messages)


def test_supo_trigger_discards_the_overflowing_turn_and_restarts_from_s1_plus_summary():
    # TV-S1: L = 8192, S = 2; |s_t| = 7900, |a_t| = 200, |o_t| = 150 -> 8250 > 8192
    s1 = [Message(role="user", content="s1:7000")]
    ctx = Summarize(limit=8192, max_summaries=2)
    ctx.reset(s1, tokens_by_message)
    assert ctx.add_turn(Message(role="assistant", content="a:800"), Message(role="user", content="o:100")) == "continue"
    overflow = (Message(role="assistant", content="a:200"), Message(role="user", content="o:150"))
    assert ctx.add_turn(*overflow) == "summarize"
    prompt = ctx.summary_prompt()
    assert contents(prompt) == ["s1:7000", "a:800", "o:100", DEFAULT_SUMMARY_INSTRUCTION]  # a_t, o_t discarded
    ctx.add_summary("  z1  ")
    assert contents(ctx.messages()) == ["s1:7000", SUMMARY_PREFIX + "z1"]
    assert (ctx.summaries, ctx.segment) == (1, 1)
    assert ctx.add_turn(*overflow) == "continue"  # 7350 fits again


def test_supo_ends_overlong_when_the_summary_budget_is_spent():
    ctx = Summarize(limit=100, max_summaries=2)
    ctx.reset([Message(role="user", content="s:50")], tokens_by_message)
    big = (Message(role="assistant", content="a:40"), Message(role="user", content="o:40"))
    for i in range(2):
        assert ctx.add_turn(*big) == "summarize"
        ctx.add_summary(f"z{i}")
    assert ctx.add_turn(*big) == "overlong"  # TV-S1 second row: I = S
    assert ctx.segment == 2


def test_exactly_at_the_limit_still_fits():
    ctx = Summarize(limit=100, max_summaries=1)
    ctx.reset([Message(role="user", content="s:50")], tokens_by_message)
    assert ctx.add_turn(Message(role="assistant", content="a:25"), Message(role="user", content="o:25")) == "continue"


def test_context_specs():
    assert isinstance(context_factory("full")(), FullHistory)
    assert context_factory("window:3")().k == 3
    ctx = context_factory("summary:512:4")()
    assert (ctx.limit, ctx.max_summaries) == (512, 4)
    assert context_factory(FullHistory) is FullHistory
    for bad in ("window:0", "summary:-1", "summary:x", "lossy"):
        with pytest.raises(ConfigError):
            context_factory(bad)


class Walk(ag.Environment):
    """Ten steps to the end of a corridor; each observation is long, so contexts fill up."""

    async def reset(self, task: ag.Task) -> str:
        self.pos = 0
        return "You are at 0. Walk to 10."

    @ag.tool
    def walk(self) -> str:
        """Take one step."""
        self.pos += 1
        if self.pos == 10:
            self.finish()
        return f"You are at {self.pos}. " + "The corridor goes on. " * 10

    def state_key(self) -> str:
        return str(self.pos)


class Stepper:
    """A stand-in model: answers every conversation with a step call, or a summary when asked for one."""

    async def generate(self, conversations: list[list[Message]], tools: list[ToolSpec] | None,
                       params: SamplingParams) -> list[Completion]:
        out = []
        for conv in conversations:
            summary = conv[-1].content == DEFAULT_SUMMARY_INSTRUCTION
            out.append(Completion(text="I walked some steps." if summary else "walk()", prompt_ids=[1] * len(conv),
                                  token_ids=[5, 6, 7] if summary else [3], logprobs=[-1.0] * (3 if summary else 1),
                                  finish_reason="stop"))
        return out

    async def aclose(self) -> None:
        pass


def walk_task() -> list[ag.Task]:
    return [ag.Task(id="w", env="walk-v0", max_turns=20)]


async def test_summaries_are_recorded_as_steps_with_segments():
    # estimate: 4 chars a token, 4 per message; each turn adds about 64 tokens
    runner = RolloutRunner(Stepper(), Walk, context=lambda: Summarize(limit=220, max_summaries=5), system_prompt=None)
    (traj,) = (await runner.run(walk_task())).trajectories
    assert traj.success and not traj.overlong
    kinds = [s.kind for s in traj.steps]
    assert kinds.count("action") == 10 and kinds.count("summary") >= 2
    for i, s in enumerate(traj.steps):
        if s.kind == "summary":
            assert s.response == "I walked some steps." and s.response_ids == [5, 6, 7]
            assert s.messages[-1].content == DEFAULT_SUMMARY_INSTRUCTION
            assert traj.steps[i - 1].index in traj.metadata["discarded_steps"]  # the overflowing turn
            assert traj.steps[i + 1].segment == s.segment + 1  # the summary closes its segment
            assert traj.steps[i + 1].messages[-1].content == SUMMARY_PREFIX + "I walked some steps."
    assert [s.segment for s in traj.steps] == sorted(s.segment for s in traj.steps)
    assert traj.steps[0].segment == 0 and traj.steps[-1].segment == kinds.count("summary")


async def test_the_discarded_overflowing_turn_carries_no_loss():
    from agentgym import credit

    runner = RolloutRunner(Stepper(), Walk, n=2, context=lambda: Summarize(limit=220, max_summaries=5),
                           system_prompt=None)
    trajs = (await runner.run(walk_task())).trajectories
    result = credit.compute(trajs)
    for i, traj in enumerate(trajs):
        discarded = set(traj.metadata["discarded_steps"])
        assert discarded
        mask = {int(j): bool(m) for t, j, m in zip(result.traj_index, result.step_index, result.loss_mask) if t == i}
        assert {j for j, m in mask.items() if not m} == discarded  # summaries and the other actions are trained


async def test_summary_budget_exhausted_ends_the_episode_overlong():
    runner = RolloutRunner(Stepper(), Walk, context=lambda: Summarize(limit=220, max_summaries=1), system_prompt=None)
    (traj,) = (await runner.run(walk_task())).trajectories
    assert traj.overlong and traj.truncated and not traj.success and traj.error is None
    assert [s.kind for s in traj.steps].count("summary") == 1


@pytest.mark.slow
async def test_smollm2_writes_a_summary_under_a_small_token_limit(smollm2):
    tools = Walk().tools
    s1 = [Message(role="system", content=DEFAULT_SYSTEM_PROMPT), Message(role="user", content="You are at 0. Walk to 10.")]
    base = smollm2.count_tokens(s1, tools)  # each turn then adds about 75 tokens: the second one overflows
    runner = RolloutRunner(smollm2, Walk, context=lambda: Summarize(limit=base + 100, max_summaries=1),
                           sampling=SamplingParams(temperature=0, max_new_tokens=12), max_turns=4)
    (traj,) = (await runner.run(walk_task())).trajectories
    assert traj.error is None
    summaries = [s for s in traj.steps if s.kind == "summary"]
    assert len(summaries) == 1 or traj.overlong
    z = summaries[0]
    assert z.response_ids and len(z.logprobs) == len(z.response_ids)
    assert smollm2.tokenizer.decode(z.response_ids, skip_special_tokens=True) == z.response
    assert z.prompt_ids == smollm2.render(z.messages, tools)
    after = traj.steps[traj.steps.index(z) + 1:]
    assert all(s.segment == 1 for s in after)
    if after:
        assert after[0].messages[-1].content == SUMMARY_PREFIX + z.response.strip()
