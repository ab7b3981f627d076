"""Python and bash execution for agents (agentgym.tools.execution), composed into a real environment and
run in the real process sandbox (skipped with the reason where bubblewrap cannot run)."""

from __future__ import annotations

import pytest

import agentgym as ag
from agentgym.sandboxes import ProcessSandbox
from agentgym.tools.execution import Execution, ExecutionTools, clip
from agentgym.types import ToolCall


class Analyst(ExecutionTools, ag.Environment):
    """Count the rows of a CSV file the episode starts with, using python and bash."""

    def __init__(self, sandbox: object = "process") -> None:
        super().__init__()
        self.execution = Execution(sandbox, timeout=3)

    async def reset(self, task: ag.Task) -> str:
        await self.execution.restart(files={"sales.csv": task.data["csv"]})
        return "How many rows does sales.csv have? Reply with answer(n)."

    @ag.tool
    async def answer(self, n: int) -> str:
        """Give the number of rows.

        Args:
            n: the row count.
        """
        right = n == self.task.data["csv"].count("\n")
        self.finish(reward=1.0 if right else 0.0)
        return "right" if right else "wrong"

    def state_key(self) -> str:
        return str(self.execution.state())

    def expert_action(self) -> ToolCall:
        last = self.execution.last
        if last is None:
            return ToolCall(name="bash", arguments={"command": "wc -l < sales.csv"})
        return ToolCall(name="answer", arguments={"n": int(last.stdout)})


def _task(rows: int) -> ag.Task:
    return ag.Task(id=f"rows-{rows}", env="analyst", data={"csv": "".join(f"{i},x\n" for i in range(rows))})


@pytest.mark.usefixtures("bwrap")
async def test_python_and_bash_share_the_episode_s_files_and_a_new_episode_starts_empty():
    async with Analyst() as env:
        await env.reset(_task(3))
        result = await env.step(ToolCall(name="bash", arguments={"command": "wc -l < sales.csv; echo made > note"}))
        assert result.valid and result.observation == "exit code 0\nstdout:\n3\n"
        result = await env.step(ToolCall(name="python", arguments={"code": "print(open('note').read().strip())"}))
        assert result.observation == "exit code 0\nstdout:\nmade\n"
        await env.reset(_task(5))
        result = await env.step(ToolCall(name="bash", arguments={"command": "ls; wc -l < sales.csv"}))
        assert result.observation == "exit code 0\nstdout:\nsales.csv\n5\n"


@pytest.mark.usefixtures("bwrap")
async def test_failures_read_as_observations_and_change_the_state_key():
    async with Analyst() as env:
        await env.reset(_task(1))
        before = env.state_key()
        failed = await env.step(ToolCall(name="python", arguments={"code": "import sys; sys.exit('no')"}))
        assert failed.valid and failed.observation == "exit code 1\nstderr:\nno\n"
        assert failed.state_key != before
        quiet = await env.step(ToolCall(name="bash", arguments={"command": "true"}))
        assert quiet.observation == "exit code 0\n(no output)"
        stuck = await env.step(ToolCall(name="python", arguments={"code": "while True: pass"}))
        assert stuck.observation.startswith("exit code -9\n(no output)\n[sandbox: the run ")
        assert env.execution.last.limit in ("timeout", "cpu")
        empty = await env.step(ToolCall(name="bash", arguments={"command": "  "}))
        assert not empty.valid and "bash needs a command" in empty.observation


@pytest.mark.usefixtures("bwrap")
async def test_the_expert_solves_it_through_the_rollout_runner():
    result = await ag.RolloutRunner("expert", env=Analyst).run([_task(4), _task(7)])
    assert [t.success for t in result.trajectories] == [True, True]
    assert [s.action.name for s in result.trajectories[0].steps] == ["bash", "answer"]
    assert result.trajectories[1].steps[0].result.observation == "exit code 0\nstdout:\n7\n"


@pytest.mark.usefixtures("bwrap")
async def test_closing_closes_the_sandbox_it_built_and_not_a_shared_one():
    async with ProcessSandbox() as shared:
        env = Analyst(sandbox=shared)
        await env.reset(_task(1))
        await env.step(ToolCall(name="bash", arguments={"command": "true"}))
        await env.aclose()
        assert env.closed and not shared.closed and not shared._sessions  # its session on the shared one closed
    own = Analyst()
    await own.reset(_task(1))
    await own.step(ToolCall(name="bash", arguments={"command": "true"}))
    await own.aclose()
    assert own.execution.sandbox.closed and own.closed


class Plain(ExecutionTools, ag.Environment):
    """Never calls restart(): each episode gets a new work directory all the same."""

    def __init__(self) -> None:
        super().__init__()
        self.execution = Execution(timeout=3)

    async def reset(self, task: ag.Task) -> str:
        return "go"

    def state_key(self) -> str:
        return str(self.execution.state())


@pytest.mark.usefixtures("bwrap")
async def test_an_episode_starts_in_a_new_work_directory_without_restart():
    async with Plain() as env:
        await env.reset(_task(1))
        left = await env.step(ToolCall(name="bash", arguments={"command": "echo x > left-over; ls"}))
        assert left.observation == "exit code 0\nstdout:\nleft-over\n"
        await env.reset(_task(1))
        assert env.state_key() == "None"  # not the last episode's run
        fresh = await env.step(ToolCall(name="bash", arguments={"command": "ls"}))
        assert fresh.observation == "exit code 0\n(no output)"


def test_the_mixin_must_come_before_environment():
    with pytest.raises(TypeError, match=r"list ExecutionTools before Environment"):
        class Backwards(ag.Environment, ExecutionTools):
            async def reset(self, task: ag.Task) -> str:
                return "go"


async def test_an_environment_without_an_execution_says_what_is_missing():
    class Forgetful(ExecutionTools, ag.Environment):
        async def reset(self, task: ag.Task) -> str:
            return "go"

    env = Forgetful()
    await env.reset(_task(1))
    assert [t.name for t in env.tools] == ["python", "bash"]
    with pytest.raises(TypeError, match=r"no self\.execution; set self\.execution = Execution"):
        await env.step(ToolCall(name="bash", arguments={"command": "ls"}))
    await env.aclose()


def test_bad_options_and_clipping():
    with pytest.raises(ValueError, match="unknown sandbox kind"):
        Execution("vm")
    with pytest.raises(ValueError, match="positive"):
        Execution(timeout=0)
    with pytest.raises(ValueError, match="built already"):
        Execution(ProcessSandbox(), sandbox_options={"warm": 1})
    with pytest.raises(ValueError, match=r"sandbox_options\['timeout'\] would be overridden .* \(now 20 s\)"):
        Execution(sandbox_options={"timeout": 1})
    assert clip("abcdef", 4) == "abcd\n... [2 more characters]" and clip("abc", 4) == "abc"
