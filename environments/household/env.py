"""``household-v0``: the :class:`HouseholdEnv` environment (the agentgym face of the simulator)."""

from __future__ import annotations

import random
from typing import Any

from agentgym.env import Environment, tool
from agentgym.environments.household.generation import sample_task
from agentgym.environments.household.sim import Simulator
from agentgym.environments.household.world import Difficulty, World, build_world, world_from_spec
from agentgym.errors import InvalidActionError
from agentgym.types import Task, ToolCall


def world_of(task: Task) -> World:
    """The world a task describes: rebuilt from a suite task's spec (and checked against its
    ``check`` hash), or taken as written when the data lists ``receptacles`` and ``objects``."""
    data = task.data
    if "objects" in data:
        try:
            return world_from_spec(data)
        except KeyError as exc:
            raise ValueError(f"household task {task.id!r}: a hand-written world needs room, receptacles, "
                             f"objects and goal; {exc} is missing") from None
    try:
        difficulty = Difficulty.of(data["difficulty"])
        world = build_world(difficulty, data["layout"], tuple(data["goal"]), int(data["seed"]))
    except KeyError as exc:
        raise ValueError(f"household task {task.id!r} lacks {exc} in its data; it needs difficulty, layout, goal "
                         f"and seed (or only a seed, to draw a new task)") from None
    check = data.get("check")
    if check is not None and check != world.check:
        raise ValueError(f"household task {task.id!r}: the world rebuilt from its data has check {world.check}, "
                         f"the task says {check}; the generator changed since the suite was written: "
                         f"regenerate it with `python -m agentgym.tasks.household.generate`")
    return world


class HouseholdEnv(Environment):
    """An ALFWorld-style household: find objects in numbered receptacles and put them to use.

    The agent acts with ALFWorld's command language (``go to X``, ``open X``, ``close X``,
    ``take O from X``, ``put O in/on X``, ``heat/cool/clean O with X``, ``use X``, ``examine X``,
    ``inventory``, ``look``), either through the one tool ``act(command)`` or by writing the
    command as plain text (see :meth:`on_text`). An inadmissible command gives "Nothing
    happens." and an invalid step. Success (the goal holds) ends the episode with reward 1.0;
    there is no other reward (milestones are reported for the trainer to weigh).

    Args:
        difficulty: ``"easy"``, ``"medium"``, ``"default"`` or a :class:`Difficulty`; used for
            tasks whose data holds only ``{"seed": n}`` (drawn on the fly). Suite tasks carry
            their own difficulty and are not affected.
        show_commands: End every observation with ``Available commands: ...`` (the admissible
            commands of the new state).
    """

    def __init__(self, difficulty: "str | dict[str, Any] | Difficulty" = "default", show_commands: bool = True) -> None:
        super().__init__()
        self.difficulty = Difficulty.of(difficulty)
        self.show_commands = show_commands
        self._sim = Simulator(show_commands=show_commands)

    async def reset(self, task: Task) -> str:
        """Build the task's world and return the first observation (room, goal, commands).

        A suite task (data with ``layout``) is rebuilt exactly; a hand-written world (data with
        ``room``, ``receptacles``, ``objects`` and ``goal``, see ``world_from_spec``) is used as
        written; data that is only ``{"seed": n}`` (optionally ``"unseen": true``) is replaced by a
        task drawn at this environment's difficulty, keeping its id. Anything else raises ValueError.
        """
        if "layout" not in task.data and "objects" not in task.data and "seed" in task.data:
            task = sample_task(int(task.data["seed"]), self.difficulty, unseen=bool(task.data.get("unseen", False)),
                               task_id=task.id, split=task.split)
            self.task = task
        return self._sim.load(world_of(task))

    @tool
    def act(self, command: str) -> str:
        """Run one household command, e.g. 'go to cabinet 1' or 'take mug 1 from countertop 1'.

        Args:
            command: One of the available commands.
        """
        sim = self._sim
        text, valid, changed = sim.execute(command)
        if not valid:
            raise InvalidActionError(text)
        if changed:
            for milestone in sim.milestones_now(self.reached):
                self.reach(milestone)
            if sim.success():
                self.finish(reward=1.0)
        return text

    def on_text(self, text: str) -> ToolCall:
        """Plain text is a command: the first line, tolerant of case, spacing, ``> ``, a final period."""
        return ToolCall(name="act", arguments={"command": text})

    def state_key(self) -> str:
        """Location, held object, moved objects, open receptacles, lit lamps, hot/cool/clean objects."""
        return self._sim.state_key()

    def admissible_commands(self) -> list[str]:
        """The commands the current state accepts, in the order observations list them."""
        return self._sim.admissible()

    @property
    def goal(self) -> str:
        """The goal text of the current task, e.g. ``put a hot mug in coffeemachine.``"""
        return self._sim.w.goal_text

    def snapshot(self) -> tuple:
        """An immutable copy of the whole episode state (cheap: a few ints and a tuple)."""
        return self.task, self._base_snapshot(), self._sim.snapshot()

    def restore(self, snapshot: tuple) -> None:
        """Return to a state from :meth:`snapshot` (also across resets)."""
        self.task, base, sim = snapshot
        self._base_restore(base)
        self._episode_started = True
        self._sim.restore(sim)

    def expert_action(self) -> str:
        """The next command of the expert planner's plan from the current state."""
        return self._sim.expert_action()

    def random_action(self, rng: random.Random) -> str:
        """A uniformly random admissible command."""
        return rng.choice(self._sim.admissible())
