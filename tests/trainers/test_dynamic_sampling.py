"""Dynamic sampling (DAPO): a step trains on the task groups whose episodes scored differently."""

from __future__ import annotations

import itertools

import pytest

import agentgym as ag
from agentgym.errors import ConfigError
from agentgym.policies import load_policy
from agentgym.store import RunStore
from agentgym.trainers import load_config
from agentgym.trainers.rl import _sample_step
from agentgym.trainers.rollouts import Collector


class Split(ag.Environment):
    """One step. A "mixed" task pays every other episode (resets alternate), a "flat" one never pays."""

    resets = itertools.count()

    async def reset(self, task: ag.Task) -> str:
        self.pays = task.data["mixed"] and next(self.resets) % 2 == 0
        return "Say stop."

    @ag.tool
    def stop(self) -> str:
        """Finish."""
        self.finish(reward=1.0 if self.pays else 0.0)
        return "Finished."

    def expert_action(self) -> str:
        return "stop()"


def _tasks(mixed: list[bool]) -> list[ag.Task]:
    return [ag.Task(id=f"t{i}", env="split-v0", data={"mixed": m}, max_turns=2) for i, m in enumerate(mixed)]


def _step(tmp_path, mixed: list[bool], tries: int = 3):
    ag.register("split-v0", Split, suites={"train": lambda: _tasks(mixed)})
    config = load_config({"env": {"id": "split-v0", "train_suite": "train", "eval_suites": []},
                          "rollout": {"tasks_per_step": 2, "group_size": 4, "concurrency": 1,
                                      "dynamic_sampling": True, "max_sampling_tries": tries}})
    store = RunStore(tmp_path / "run")
    collector = Collector(config, load_policy("expert"), store, progress=False)
    try:
        tasks, kept, sampled, metrics = _sample_step(collector, _tasks(mixed), config, 1, None)
    finally:
        collector.close()
    assert len(store.load_trajectories("train-000001")) == len(sampled)  # every episode is kept on disk
    return tasks, kept, sampled, metrics


def _groups(trajectories):
    return [trajectories[i:i + 4] for i in range(0, len(trajectories), 4)]


def test_groups_that_scored_alike_are_replaced_until_the_step_is_full(tmp_path):
    tasks, kept, sampled, metrics = _step(tmp_path, [True, False] * 4)
    assert len(tasks) == 2 and len(kept) == 8 and [t.task_id for t in kept[::4]] == [t.id for t in tasks]
    tries = metrics["sampling_tries"]
    assert len(sampled) == tries * 8 and metrics["groups_sampled"] == tries * 2
    last_try = {t.group_id for t in sampled[-8:]}
    for group in _groups(kept):  # a flat group only where the last try filled the step
        assert len({t.reward for t in group}) > 1 or (tries == 3 and group[0].group_id in last_try)
    assert metrics["groups_informative"] == sum(len({t.reward for t in g}) > 1 for g in _groups(sampled))
    if tries < 3:
        assert all(len({t.reward for t in g}) > 1 for g in _groups(kept))
    first, second = {t.task_id for t in sampled[:8]}, {t.task_id for t in sampled[8:16]}
    assert not first & second  # a later try draws tasks the step has not tried


def test_the_last_try_fills_the_step_with_the_groups_that_differ_first(tmp_path):
    # seed 0 draws t3 and t7, then t4 and t6: the step keeps t3, and of the last try t6 (it differs), not t4
    tasks, kept, sampled, metrics = _step(tmp_path, [i in (3, 6) for i in range(8)], tries=2)
    assert [t.task_id for t in sampled[::4]] == ["t3", "t7", "t4", "t6"]
    assert [t.id for t in tasks] == ["t3", "t6"] and metrics["groups_informative"] == 2
    assert all(len({t.reward for t in group}) > 1 for group in _groups(kept))
    assert metrics["trained_groups"] == [t.group_id for t in kept[::4]]


def test_a_step_of_informative_groups_needs_one_rollout(tmp_path):
    tasks, kept, sampled, metrics = _step(tmp_path, [True] * 6)
    assert metrics == {"sampling_tries": 1, "groups_sampled": 2, "groups_informative": 2,
                       "trained_groups": [t.group_id for t in kept[::4]]}
    assert kept == sampled and len(kept) == 8


@pytest.mark.parametrize("tries", [1, 3])
def test_when_no_group_differs_the_last_rollout_is_kept_whole(tmp_path, tries):
    tasks, kept, sampled, metrics = _step(tmp_path, [False] * 8, tries)
    assert metrics == {"sampling_tries": tries, "groups_sampled": 2 * tries, "groups_informative": 0,
                       "trained_groups": [t.group_id for t in sampled[-8::4]]}
    assert kept == sampled[-8:] and len(sampled) == 8 * tries


def test_dynamic_sampling_settings_are_checked():
    with pytest.raises(ConfigError, match="needs rollout.group_size of 2 or more"):
        load_config({"rollout": {"dynamic_sampling": True, "group_size": 1}})
    with pytest.raises(ConfigError, match="rollout.dynamic_sampling is false"):
        load_config({"rollout": {"max_sampling_tries": 5}})
