"""Multi-agent environments: roles declared by the environment, one conversation per role, the
role recorded on every step (training with them: tests/trainers/test_multiagent_training.py)."""

from __future__ import annotations

import pytest

import agentgym as ag
from agentgym.errors import ConfigError
from agentgym.rollout import RolloutRunner
from agentgym.trainers.tiny import register_relay
from agentgym.types import ToolCall


class Turns(ag.Environment):
    """Roles a and b take turns (a, b, a, b); each observation names whom it is for and the turn."""

    agents = {"a": "You are A.", "b": "You are B."}

    async def reset(self, task: ag.Task) -> str:
        return "for a: start"

    def current_agent(self) -> str:
        return self.task.data.get("next", "ab")[self.turn % 2]

    @ag.tool
    async def move(self, word: str) -> str:
        """Make a move."""
        if self.turn == 4:
            self.finish(1.0)
        return f"for {self.current_agent()}: after {word} at turn {self.turn}"

    def state_key(self) -> str:
        return str(self.turn)

    def expert_action(self) -> ToolCall:
        return ToolCall(name="move", arguments={"word": f"{self.current_agent()}{self.turn + 1}"})


@pytest.fixture(autouse=True)
def registered():
    ag.register("turns-test-v0", Turns)
    register_relay()


def conversation(step) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in step.messages]


def test_each_role_has_its_own_conversation_and_every_step_names_its_role():
    (traj,) = RolloutRunner("expert", system_prompt="Play.").run_sync([ag.Task(id="t", env="turns-test-v0")]).trajectories
    assert traj.success and [s.agent for s in traj.steps] == ["a", "b", "a", "b"]
    call = '<tool_call>{"name": "move", "arguments": {"word": "%s"}}</tool_call>'
    assert conversation(traj.steps[2]) == [  # a's second turn: its own first turn, then what came to it
        ("system", "Play.\n\nYou are A."), ("user", "for a: start"), ("assistant", call % "a1"),
        ("user", "for a: after b2 at turn 2")]
    assert conversation(traj.steps[3]) == [
        ("system", "Play.\n\nYou are B."), ("user", "for b: after a1 at turn 1"), ("assistant", call % "b2"),
        ("user", "for b: after a3 at turn 3")]


def test_the_task_prompt_goes_with_the_first_observation_only():
    (traj,) = RolloutRunner("expert", system_prompt=None).run_sync(
        [ag.Task(id="t", env="turns-test-v0", prompt="Secret plan for a.")]).trajectories
    assert conversation(traj.steps[0])[1] == ("user", "Secret plan for a.\n\nfor a: start")
    assert conversation(traj.steps[1])[1] == ("user", "for b: after a1 at turn 1")
    assert "Secret" not in str(traj.steps[3].messages)


class Solo(Turns):
    """One declared role: a single conversation under that role's name and instruction."""

    agents = {"solver": "You solve it."}


def test_one_declared_role_is_one_conversation_with_its_name_and_instruction():
    ag.register("solo-test-v0", Solo)
    (traj,) = RolloutRunner("expert", system_prompt="Play.").run_sync([ag.Task(id="t", env="solo-test-v0")]).trajectories
    assert [s.agent for s in traj.steps] == ["solver"] * 4 and traj.success
    assert conversation(traj.steps[1])[0] == ("system", "Play.\n\nYou solve it.")
    assert [m.role for m in traj.steps[3].messages] == ["system", "user"] + ["assistant", "user"] * 3


def test_training_sequences_continue_each_roles_own_conversation():
    """Steps of roles that take turns merge per role (a prompt extends that role's last step), not never."""
    from agentgym.trainers.batching import build_sequences
    from agentgym.types import Step, Trajectory

    def step(agent, prompt, response):
        return Step(index=0, agent=agent, prompt_ids=prompt, response_ids=response, logprobs=[0.0] * len(response))

    a1, b1 = step("a", [1, 2], [3]), step("b", [7, 8], [9])
    a2, b2 = step("a", [1, 2, 3, 4], [5]), step("b", [7, 8, 9, 10], [11])
    traj = Trajectory(id="x", group_id="g", task_id="t", env="turns-test-v0", steps=[a1, b1, a2, b2])
    seqs = build_sequences([traj], {(0, t): 1.0 for t in range(4)})
    assert [(s.input_ids, s.rows) for s in seqs] == [([1, 2, 3, 4, 5], [(0, 0), (0, 2)]),
                                                     ([7, 8, 9, 10, 11], [(0, 1), (0, 3)])]


def test_a_role_that_acts_twice_in_a_row_sees_each_observation_in_turn():
    (traj,) = RolloutRunner("expert", system_prompt=None).run_sync(
        [ag.Task(id="t", env="turns-test-v0", data={"next": "aa"})]).trajectories
    assert [s.agent for s in traj.steps] == ["a"] * 4
    assert [m.role for m in traj.steps[3].messages] == ["system", "user"] + ["assistant", "user"] * 3


def test_private_information_stays_with_its_role():
    tasks = ag.load_tasks("tiny-relay-v0", "train")
    result = RolloutRunner("random", n=8, system_prompt=None).run_sync(tasks)
    assert result.summary()["failed"] == 0
    for traj in result.trajectories:
        scout, opener = traj.steps
        color = traj.task_id.rsplit("-", 1)[1]
        assert (scout.agent, opener.agent) == ("scout", "opener")
        assert conversation(scout)[-1] == ("user", f"the door is {color} .")
        heard = conversation(opener)
        assert heard[0] == ("system", "Say the color you are told to open the door.")
        assert heard[1:] == [("user", f"{scout.action.arguments['color']} .")]  # what the scout said, nothing else
        assert traj.success == (opener.action.arguments["color"] == color)
    said_wrong = [t for t in result.trajectories if t.steps[0].action.arguments["color"] != t.task_id.rsplit("-", 1)[1]]
    assert said_wrong and all(t.task_id.rsplit("-", 1)[1] not in str(t.steps[1].messages) for t in said_wrong)


def test_a_role_the_environment_did_not_declare_fails_the_episode():
    (traj,) = RolloutRunner("expert").run_sync([ag.Task(id="t", env="turns-test-v0", data={"next": "ac"})]).trajectories
    assert traj.error == "current_agent() returned 'c', which is not one of the environment's agents (a, b)"
    assert [s.agent for s in traj.steps] == ["a"]


def test_summarization_is_refused_for_several_conversations():
    class Talker:  # a model policy that never gets called: the check comes first
        name = "talker"

        async def generate(self, conversations, tools, params):
            raise AssertionError("not reached")

        async def aclose(self) -> None:
            pass

    with pytest.raises(ConfigError, match="turns-test-v0 has several agents, each with a conversation of its own"):
        RolloutRunner(Talker(), context="summary:200").run_sync([ag.Task(id="t", env="turns-test-v0")])


def test_the_gymnasium_adapter_and_the_envs_command_name_the_agents():
    import subprocess
    import sys

    import gymnasium

    env = gymnasium.make("agentgym/tiny-relay-v0")
    obs, info = env.reset(seed=0, options={"task_index": 1})
    assert obs == "the door is green ." and info["agent"] == "scout"
    obs, _, terminated, _, info = env.step("green")
    assert obs == "green ." and not terminated and info["agent"] == "opener"
    obs, reward, terminated, _, info = env.step("green")
    assert (obs, reward, terminated) == ("the door is open .", 1.0, True) and "agent" not in info
    env.close()
    listed = subprocess.run([sys.executable, "-m", "agentgym", "envs", "--plugin", "agentgym.trainers.tiny:register_relay"],
                            capture_output=True, text=True, timeout=120, env={"COLUMNS": "200", "PATH": ""})
    line = next(x for x in listed.stdout.splitlines() if "tiny-relay-v0" in x)
    assert "say (agents: scout, opener)" in line
