"""household-v0 task suites: sizes, regeneration, held-out splits, and rebuilding worlds from task data."""

from __future__ import annotations

from pathlib import Path

import pytest

import agentgym as ag
import agentgym.tasks.household as suites_pkg
from agentgym.environments.household.env import world_of
from agentgym.environments.household.generation import SUITES, generate_suites, suite_text
from agentgym.environments.household.vocab import OBJECTS, ROOM_OBJECTS, ROOMS
from agentgym.environments.household.world import Difficulty, heldout, layout_signature
from agentgym.tasks.household import generate

FOLDER = Path(suites_pkg.__file__).parent


@pytest.fixture(scope="module")
def suites() -> dict[str, list[ag.Task]]:
    return {name: ag.load_tasks("household-v0", name) for name in SUITES}


def identity(task: ag.Task) -> tuple:
    """What makes two tasks the same: the whole built world and its goal."""
    world = world_of(task)
    return tuple(world.rname), tuple(world.oname), world.where0, world.goal


def combo(task: ag.Task) -> tuple[str, str]:
    return task.data["goal"][1], task.data["goal"][2]


def signature(task: ag.Task) -> tuple:
    return layout_signature(task.data["layout"], Difficulty.of(task.data["difficulty"]))


def test_registered_suites_sizes_and_files(suites):
    assert set(ag.registry.suites("household-v0")) == set(SUITES)
    sizes = {name: len(tasks) for name, tasks in suites.items()}
    assert sizes["train"] >= 3000 and sizes["test-seen"] >= 200 and sizes["test-unseen"] >= 200
    assert sizes["easy-test-unseen"] >= 100 and sizes["easy-train"] >= 1000
    for name in SUITES:
        assert (FOLDER / f"{name}.jsonl").stat().st_size < 2_000_000, name
    for name, tasks in suites.items():
        assert len({t.id for t in tasks}) == len(tasks)
        assert {t.split for t in tasks} == {"train" if name.endswith("train") else "test"}


def test_regenerating_gives_identical_files():
    for name, tasks in generate_suites().items():
        assert suite_text(tasks) == (FOLDER / f"{name}.jsonl").read_text(encoding="utf-8"), name


def test_the_generate_command_writes_and_checks(tmp_path, monkeypatch, capsys):
    tasks = ag.load_tasks("household-v0", "easy-test-seen")[:3]
    monkeypatch.setattr(generate, "generate_suites", lambda seed: {"tiny": tasks})
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1
    assert "out of date: tiny" in capsys.readouterr().err
    assert generate.main(["--out", str(tmp_path)]) == 0
    assert generate.main(["--check", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "tiny.jsonl").read_text() == suite_text(tasks)


@pytest.mark.parametrize("prefix", ["", "easy-"])
def test_no_test_task_appears_in_train(suites, prefix):
    train = {identity(t) for t in suites[prefix + "train"]}
    for name in ("test-seen", "test-unseen"):
        tests = [identity(t) for t in suites[prefix + name]]
        assert not train.intersection(tests), name
        assert len(set(tests)) == len(tests)


@pytest.mark.parametrize("prefix", ["", "easy-"])
def test_unseen_uses_combinations_and_layouts_never_in_train(suites, prefix):
    train = suites[prefix + "train"]
    train_combos = {combo(t) for t in train}
    train_layouts = {signature(t) for t in train}
    unseen = suites[prefix + "test-unseen"]
    assert not {combo(t) for t in unseen} & train_combos
    assert not {signature(t) for t in unseen} & train_layouts
    assert all(heldout(*combo(t)) for t in unseen) and not any(heldout(*combo(t)) for t in train)
    # ...yet with words the agent has seen: every object and receptacle type of unseen goals occurs in train.
    assert {c[0] for c in map(combo, unseen)} <= {c[0] for c in train_combos}
    assert {c[1] for c in map(combo, unseen)} <= {c[1] for c in train_combos}


@pytest.mark.parametrize("prefix", ["", "easy-"])
def test_seen_uses_train_layouts_and_combinations(suites, prefix):
    train = suites[prefix + "train"]
    seen = suites[prefix + "test-seen"]
    assert {t.data["layout"] for t in seen} <= {t.data["layout"] for t in train}
    assert {combo(t) for t in seen} <= {combo(t) for t in train}


def test_every_task_type_is_in_every_default_suite_and_easy_is_easy(suites):
    for name in ("train", "test-seen", "test-unseen"):
        assert len({t.data["goal"][0] for t in suites[name]}) == 6, name
    for name in ("easy-train", "easy-test-seen", "easy-test-unseen"):
        for task in suites[name]:
            world = world_of(task)
            assert 4 <= len(world.rname) <= 6 and len(world.oname) <= 4 and task.max_turns == 10
        assert {t.data["goal"][0] for t in suites[name]} == {"pick_and_place", "look_at_obj_in_light"}


def test_task_data_is_small_and_milestones_match_the_goal(suites):
    task = suites["train"][0]
    assert set(task.data) == {"difficulty", "layout", "goal", "seed", "check"}
    for tasks in suites.values():
        for task in tasks[:200]:
            assert [m.id for m in task.milestones] == list(world_of(task).milestones)
            assert task.prompt == f"Your task is to: {world_of(task).goal_text}"


def test_a_task_whose_world_changed_is_refused():
    task = ag.load_tasks("household-v0", "test-seen")[0]
    tampered = task.model_copy(update={"data": {**task.data, "seed": task.data["seed"] + 1}})
    with pytest.raises(ValueError, match="regenerate"):
        world_of(tampered)
    with pytest.raises(ValueError, match="lacks 'layout'"):
        world_of(task.model_copy(update={"data": {"goal": task.data["goal"], "seed": 1, "difficulty": "easy"}}))


def test_vocabulary_is_consistent():
    for room, objects in ROOM_OBJECTS.items():
        for obj in objects:
            assert set(OBJECTS[obj][1]) & set(ROOMS[room]), (room, obj)
