"""Seeded generation of household tasks and of the committed suites.

Held-out design: a fixed fifth of the object-receptacle combinations (:func:`~.world.heldout`)
and a separate pool of room layouts are used only by the ``*test-unseen`` suites. A test suite
is drawn after its train suite and within its words: ``test-seen`` uses only layouts and
combinations that occur in train; ``test-unseen`` uses held-out combinations and unseen layouts
made of object and receptacle types that train goals use. No world (placement and goal)
appears in two suites. Every generated task is solved by the expert before it is kept,
within the difficulty's ``max_plan`` and ``max_turns``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from agentgym.environments.household.sim import Simulator
from agentgym.environments.household.vocab import ROOMS
from agentgym.environments.household.world import (
    Difficulty, Goal, Rng, World, build_world, feasible_goals, heldout, layout, layout_signature,
    milestone_descriptions, stable_int,
)
from agentgym.types import Milestone, Task

ENV_ID = "household-v0"
SEEN_LAYOUTS_PER_ROOM = 25
UNSEEN_LAYOUTS_PER_ROOM = 8
_UNSEEN_FIRST_INDEX = 10_000  # unseen layout ids start here, so the two pools never share an id


@dataclass(frozen=True)
class SuiteSpec:
    """One committed suite: its difficulty, whether it is held out, its size and split, and the
    train suite whose layouts and words a test suite stays within (None for a train suite)."""

    difficulty: str
    unseen: bool
    size: int
    split: str
    train: str | None = None


SUITES: dict[str, SuiteSpec] = {
    "train": SuiteSpec("default", False, 3000, "train"),
    "test-seen": SuiteSpec("default", False, 200, "test", train="train"),
    "test-unseen": SuiteSpec("default", True, 200, "test", train="train"),
    "easy-train": SuiteSpec("easy", False, 2000, "train"),
    "easy-test-seen": SuiteSpec("easy", False, 200, "test", train="easy-train"),
    "easy-test-unseen": SuiteSpec("easy", True, 200, "test", train="easy-train"),
}
GENERATOR_SEED = 0


@functools.lru_cache(maxsize=32)
def layout_pool(difficulty: Difficulty, unseen: bool) -> dict[str, tuple[str, ...]]:
    """Layout ids per room kind: the seen pool, or unseen layouts that differ from every seen one."""
    seen = {room: tuple(f"{room}-{i}" for i in range(SEEN_LAYOUTS_PER_ROOM)) for room in sorted(ROOMS)}
    if not unseen:
        return seen
    taken = {layout_signature(lid, difficulty) for ids in seen.values() for lid in ids}
    pool: dict[str, tuple[str, ...]] = {}
    for room in sorted(ROOMS):
        ids: list[str] = []
        index = _UNSEEN_FIRST_INDEX
        while len(ids) < UNSEEN_LAYOUTS_PER_ROOM:
            lid = f"{room}-{index}"
            sig = layout_signature(lid, difficulty)
            if sig not in taken:
                taken.add(sig)
                ids.append(lid)
            index += 1
            if index > _UNSEEN_FIRST_INDEX + 10_000:
                raise RuntimeError(f"cannot find {UNSEEN_LAYOUTS_PER_ROOM} unseen {room} layouts at {difficulty.name}")
        pool[room] = tuple(ids)
    return pool


def task_data(difficulty: Difficulty, layout_id: str, goal: Goal, seed: int, world: World) -> dict[str, Any]:
    """What a task stores: enough to rebuild its world, plus a check hash of the result."""
    return {"difficulty": difficulty.to_data(), "layout": layout_id, "goal": list(goal), "seed": seed,
            "check": world.check}


def make_task(task_id: str, difficulty: Difficulty, layout_id: str, goal: Goal, seed: int,
              split: str = "train") -> Task:
    """The Task for a world spec (prompt, milestones and limits filled in)."""
    world = build_world(difficulty, layout_id, goal, seed)
    descriptions = milestone_descriptions(goal)
    return Task(id=task_id, env=ENV_ID, split=split, prompt=f"Your task is to: {world.goal_text}",
                data=task_data(difficulty, layout_id, goal, seed, world),
                milestones=[Milestone(id=m, description=descriptions[m]) for m in world.milestones],
                max_turns=difficulty.max_turns)


def expert_solves(world: World, difficulty: Difficulty) -> bool:
    """Whether the expert's plan reaches the goal within the difficulty's limits."""
    sim = Simulator(show_commands=False)
    sim.load(world)
    plan = sim.expert_plan()
    limit = min(difficulty.max_plan or difficulty.max_turns, difficulty.max_turns)
    if not plan or len(plan) > limit:
        return False
    for command in plan:
        if not sim.execute(command)[1]:
            return False
    return sim.success()


def sample_spec(rng: Rng, difficulty: Difficulty, unseen: bool,
                allowed: Callable[[Goal], bool] | None = None) -> tuple[str, Goal, int, World]:
    """Draw one solvable (layout id, goal, seed, world) of ``difficulty`` whose goal is ``allowed``."""
    pool = layout_pool(difficulty, unseen)
    rooms = sorted(ROOMS)
    task_type = rng.choice(difficulty.task_types)  # kept while retrying, so the types stay balanced
    for _ in range(10_000):
        layout_id = rng.choice(pool[rng.choice(rooms)])
        room = layout_id.rpartition("-")[0]
        goals = [g for g in feasible_goals(room, layout(layout_id, difficulty), task_type)
                 if heldout(g[1], g[2]) == unseen and (allowed is None or allowed(g))]
        if not goals:
            continue
        goal = rng.choice(goals)
        seed = rng.below(2**31)
        world = build_world(difficulty, layout_id, goal, seed)
        if expert_solves(world, difficulty):
            return layout_id, goal, seed, world
    raise RuntimeError(f"could not draw a solvable task at difficulty {difficulty.name}")


def sample_task(seed: int, difficulty: "str | Difficulty" = "default", unseen: bool = False,
                task_id: str | None = None, split: str = "train") -> Task:
    """A fresh task drawn from ``seed`` (what ``reset`` does with ``data={"seed": n}``)."""
    diff = Difficulty.of(difficulty)
    layout_id, goal, world_seed, _ = sample_spec(Rng(stable_int("sample", seed)), diff, unseen)
    return make_task(task_id or f"household-{diff.name}-{seed}", diff, layout_id, goal, world_seed, split)


def generate_suites(seed: int = GENERATOR_SEED) -> dict[str, list[Task]]:
    """All committed suites, deterministically from ``seed``; no world appears twice."""
    seen_worlds: set[tuple[str, str]] = set()
    suites: dict[str, list[Task]] = {}
    for name, spec in SUITES.items():
        difficulty = Difficulty.of(spec.difficulty)
        rng = Rng(stable_int("suite", name, seed))
        allowed = None if spec.train is None else _within(suites[spec.train], spec.unseen)
        tasks: list[Task] = []
        while len(tasks) < spec.size:
            layout_id, goal, world_seed, world = sample_spec(rng, difficulty, spec.unseen, allowed)
            identity = (difficulty.name, world.check)
            if identity in seen_worlds:
                continue
            seen_worlds.add(identity)
            tasks.append(make_task(f"household-{name}-{len(tasks):05d}", difficulty, layout_id, goal, world_seed,
                                   spec.split))
        suites[name] = tasks
    return suites


def _within(train: list[Task], unseen: bool) -> Callable[[Goal], bool]:
    """The goals a test suite may use, given its train suite (see the module docstring)."""
    combos = {(t.data["goal"][1], t.data["goal"][2]) for t in train}
    if not unseen:
        return lambda goal: (goal[1], goal[2]) in combos
    objects, targets = {o for o, _ in combos}, {r for _, r in combos}
    return lambda goal: goal[1] in objects and goal[2] in targets


def suite_text(tasks: list[Task]) -> str:
    """The JSONL text of a suite (compact: defaults are left out)."""
    return "".join(t.model_dump_json(exclude_defaults=True) + "\n" for t in tasks)


def write_suites(folder: Path, seed: int = GENERATOR_SEED) -> dict[str, Path]:
    """Generate every suite and write ``<folder>/<suite>.jsonl``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, tasks in generate_suites(seed).items():
        path = paths[name] = folder / f"{name}.jsonl"
        path.write_text(suite_text(tasks), encoding="utf-8")
    return paths
