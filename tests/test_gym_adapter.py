"""Gymnasium adapter: gymnasium.make on agentgym ids, and Gymnasium's own env checker."""

import asyncio
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import agentgym as ag
from agentgym import registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import counter  # noqa: E402,F401  (registers counter-v0)

TASKS = [ag.Task(id=f"c{i}", env="counter-v0", data={"target": i + 2}, max_turns=6) for i in range(5)]
registry.register_suite("counter-v0", "train", lambda: TASKS)


def test_gymnasium_make_and_an_episode():
    env = gymnasium.make("agentgym/counter-v0")
    obs, info = env.reset(seed=1, options={"task_index": 1})
    assert obs == "Reach 3. The value is 0." and info["task_id"] == "c1" and info["state_key"] == "0"
    obs, reward, terminated, truncated, info = env.step("add(n=1)")
    assert (obs, reward, terminated, truncated, info["valid"]) == ("The value is 1.", 0.0, False, False, True)
    obs, reward, terminated, truncated, info = env.step("no idea")
    assert not info["valid"] and "no tool call found" in obs
    obs, reward, terminated, truncated, info = env.step('{"name": "add", "arguments": {"n": 2}}')
    assert reward == 1.0 and terminated and not truncated
    env.close()


class Cafe(ag.Environment):
    """Observations with text beyond ASCII."""

    async def reset(self, task: ag.Task) -> str:
        return "Café de Flore — 20 °C ✓"

    @ag.tool
    async def order(self, item: str) -> str:
        """Order.

        Args:
            item: what.
        """
        return f"Un {item}, s'il vous plaît."

    def state_key(self) -> str:
        return ""


def test_observations_are_the_environments_text_unchanged_the_first_after_the_prompt():
    ag.register("cafe-gym-v0", Cafe)
    env = gymnasium.make("agentgym/cafe-gym-v0", tasks=[ag.Task(id="t", env="cafe-gym-v0", prompt="Order a coffee.")])
    obs, _ = env.reset(seed=0)
    assert obs == "Order a coffee.\n\nCafé de Flore — 20 °C ✓"  # as the rollout engine's first message shows it
    obs, *_ = env.step('order(item="crème brûlée")')
    assert obs == "Un crème brûlée, s'il vous plaît." and env.observation_space.contains(obs)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_env_checker_passes():
    env = gymnasium.make("agentgym/counter-v0").unwrapped
    check_env(env, skip_render_check=True)
    env.close()


def test_same_seed_same_task():
    env = gymnasium.make("agentgym/counter-v0")
    assert env.reset(seed=7)[1]["task_id"] == env.reset(seed=7)[1]["task_id"]
    env.close()


def test_adapter_works_inside_a_running_event_loop():
    async def inside():
        env = gymnasium.make("agentgym/counter-v0")
        obs, _ = env.reset(seed=0, options={"task_index": 0})
        env.close()
        return obs

    assert asyncio.run(inside()) == "Reach 2. The value is 0."


def test_unknown_render_mode_is_refused():
    # Gymnasium warns first, then the environment refuses
    with pytest.warns(UserWarning, match="render_mode='human' that is not in the possible render_modes"):
        with pytest.raises(ValueError, match="render_mode"):
            gymnasium.make("agentgym/counter-v0", render_mode="human")


def test_a_bad_task_index_and_a_step_after_close_say_what_is_wrong():
    from agentgym.errors import EnvironmentClosedError

    env = gymnasium.make("agentgym/counter-v0").unwrapped
    for index in (5, -1, "0"):
        with pytest.raises(ValueError, match=r"options\['task_index'\] must be an integer in \[0, 5\)"):
            env.reset(options={"task_index": index})
    assert env.reset(options={"task_index": np.int64(4)})[1]["task_index"] == 4
    env.close()
    with pytest.raises(EnvironmentClosedError, match="is closed"):
        env.step("add(n=1)")
    env.close()  # a second close does nothing
