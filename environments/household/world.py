"""Static worlds: difficulty presets, room layouts, goals, and the seeded builder of one world.

A task stores only what rebuilds its world (difficulty, layout id, goal, seed, and a short
``check`` hash of the result), so suites stay small and :func:`build_world` must be exactly
reproducible. It draws from :class:`Rng`, which uses nothing of :mod:`random` but
``Random.random()`` on an integer seed: the one sequence Python promises to keep across versions.
"""

from __future__ import annotations

import functools
import hashlib
import random
from bisect import insort
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

from agentgym.environments.household.vocab import (
    APPLIANCE, CONTAINER, LAMP, LAMPS, OBJECTS, RECEPTACLES, ROOM_CORE, ROOM_LAMP, ROOM_OBJECTS, ROOMS,
    TASK_NEEDS, TASK_TYPES,
)


def stable_int(*parts: object) -> int:
    """A 63-bit integer hash of ``parts`` that is the same in every process and Python version."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class Rng:
    """Seeded choices built only on ``random.Random(int).random()`` (stable across Python versions)."""

    __slots__ = ("_random",)

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed).random

    def below(self, n: int) -> int:
        """A uniform integer in ``[0, n)``; ``n`` must be positive."""
        return int(self._random() * n)

    def randint(self, lo: int, hi: int) -> int:
        """A uniform integer in ``[lo, hi]``."""
        return lo + self.below(hi - lo + 1)

    def choice(self, seq: Sequence[Any]) -> Any:
        """A uniform element of a non-empty sequence."""
        return seq[self.below(len(seq))]

    def shuffled(self, seq: Sequence[Any]) -> list[Any]:
        """A Fisher-Yates shuffled copy of ``seq``."""
        out = list(seq)
        for i in range(len(out) - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out


# ----- difficulty ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difficulty:
    """How large and hard generated worlds are.

    Attributes:
        name: Preset name, or "custom".
        receptacles: Inclusive range of the number of receptacles in a room.
        objects: Inclusive range of the number of objects in a room.
        task_types: The task types the generator may pick (see ``vocab.TASK_TYPES``).
        max_turns: Turn limit of an episode (ALFWorld uses 50).
        max_plan: Longest expert plan the generator accepts (None: no limit).
        full_rooms: Whether every room has its core receptacles (a kitchen its fridge, microwave,
            sinkbasin and countertop); otherwise only lamps are guaranteed.
    """

    name: str = "custom"
    receptacles: tuple[int, int] = (10, 20)
    objects: tuple[int, int] = (8, 16)
    task_types: tuple[str, ...] = TASK_TYPES
    max_turns: int = 50
    max_plan: int | None = None
    full_rooms: bool = True

    def __post_init__(self) -> None:
        for attr, least in (("receptacles", 2), ("objects", 1)):
            lo, hi = getattr(self, attr)
            if not least <= lo <= hi:
                raise ValueError(f"difficulty {attr} must be a range (lo, hi) with {least} <= lo <= hi, "
                                 f"got {(lo, hi)}")
        unknown = [t for t in self.task_types if t not in TASK_TYPES]
        if unknown or not self.task_types:
            raise ValueError(f"difficulty task_types must be a non-empty subset of {list(TASK_TYPES)}, "
                             f"got {list(self.task_types)}")
        if self.max_turns <= 0:
            raise ValueError(f"difficulty max_turns must be positive, got {self.max_turns}")
        if self.max_plan is not None and self.max_plan < 3:
            raise ValueError(f"difficulty max_plan must be at least 3 (the shortest plan) or None, "
                             f"got {self.max_plan}")

    @classmethod
    def of(cls, value: "str | dict[str, Any] | Difficulty") -> "Difficulty":
        """A preset by name, a Difficulty, or a dict of its fields (as stored in task data)."""
        if isinstance(value, Difficulty):
            return value
        if isinstance(value, str):
            try:
                return PRESETS[value]
            except KeyError:
                raise ValueError(f"unknown difficulty {value!r}; use one of {sorted(PRESETS)} "
                                 f"or a Difficulty(...)") from None
        if isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            extra = sorted(set(value) - known)
            if extra:
                raise ValueError(f"unknown difficulty fields {extra}; known: {sorted(known)}")
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
        raise TypeError(f"difficulty must be a preset name, a dict or a Difficulty, got {type(value).__name__}")

    def to_data(self) -> str | dict[str, Any]:
        """The JSON form stored in task data: the preset name, or all fields when custom."""
        if PRESETS.get(self.name) == self:
            return self.name
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


PRESETS: dict[str, Difficulty] = {
    # Small enough for a 135M model on a CPU: 4-6 receptacles, 2-4 objects, plans of 3-5 commands.
    "easy": Difficulty(name="easy", receptacles=(4, 6), objects=(2, 4),
                       task_types=("pick_and_place", "look_at_obj_in_light"), max_turns=10, max_plan=5,
                       full_rooms=False),
    "medium": Difficulty(name="medium", receptacles=(6, 10), objects=(4, 8), task_types=TASK_TYPES, max_turns=30,
                         max_plan=10),
    # ALFWorld-like: every task type, rooms of 10-20 receptacles, 50 turns.
    "default": Difficulty(name="default", receptacles=(10, 20), objects=(8, 16), task_types=TASK_TYPES,
                          max_turns=50),
}


# ----- layouts ---------------------------------------------------------------------------------

Layout = tuple[tuple[str, int], ...]  # (receptacle type, count), sorted by type


def parse_layout_id(layout_id: str) -> tuple[str, int]:
    """``"kitchen-12"`` -> ``("kitchen", 12)``."""
    room, _, index = layout_id.rpartition("-")
    if room not in ROOMS or not index.isdigit():
        raise ValueError(f"a layout id is '<room>-<number>' with room in {sorted(ROOMS)}, got {layout_id!r}")
    return room, int(index)


@functools.lru_cache(maxsize=4096)
def layout(layout_id: str, difficulty: Difficulty) -> Layout:
    """The receptacle types and counts of layout ``layout_id`` at ``difficulty`` (deterministic)."""
    room, index = parse_layout_id(layout_id)
    caps = ROOMS[room]
    rng = Rng(stable_int("layout", room, index, *difficulty.receptacles, difficulty.full_rooms))
    n = min(rng.randint(*difficulty.receptacles), sum(caps.values()))
    forced = ROOM_CORE[room] if difficulty.full_rooms else ((ROOM_LAMP[room],) if room in ROOM_LAMP else ())
    counts = {t: 1 for t in forced}
    # One slot per possible receptacle: types with many instances (cabinets) come up more often.
    slots = [t for t in sorted(caps) for _ in range(caps[t] - counts.get(t, 0))]
    for t in rng.shuffled(slots)[: max(0, n - len(counts))]:
        counts[t] = counts.get(t, 0) + 1
    return tuple(sorted(counts.items()))


# ----- goals -----------------------------------------------------------------------------------

Goal = tuple[str, str, str]  # (task type, object type, target receptacle type or lamp type)

HELDOUT_PERCENT = 20


def heldout(object_type: str, target_type: str) -> bool:
    """Whether the object-receptacle combination is reserved for unseen test suites."""
    return stable_int("heldout", object_type, target_type) % 100 < HELDOUT_PERCENT


def goal_text(goal: Goal) -> str:
    """The goal in ALFWorld's words, e.g. ``put a hot mug in coffeemachine.``"""
    task_type, obj, target = goal
    return {
        "pick_and_place": f"put a {obj} in {target}.",
        "look_at_obj_in_light": f"look at {obj} under the {target}.",
        "pick_clean_then_place": f"put a clean {obj} in {target}.",
        "pick_heat_then_place": f"put a hot {obj} in {target}.",
        "pick_cool_then_place": f"put a cool {obj} in {target}.",
        "pick_two_obj_and_place": f"put two {obj} in {target}.",
    }[task_type]


# task type -> milestone ids in the order an expert reaches them (the last one is success).
MILESTONES: dict[str, tuple[str, ...]] = {
    "pick_and_place": ("found", "held", "placed"),
    "look_at_obj_in_light": ("found", "held", "brought", "examined"),
    "pick_clean_then_place": ("found", "held", "cleaned", "placed"),
    "pick_heat_then_place": ("found", "held", "heated", "placed"),
    "pick_cool_then_place": ("found", "held", "cooled", "placed"),
    "pick_two_obj_and_place": ("found", "held", "first_placed", "second_held", "placed"),
}


def milestone_descriptions(goal: Goal) -> dict[str, str]:
    """A one-line description of each milestone of ``goal``."""
    task_type, obj, target = goal
    state = {"pick_clean_then_place": "clean ", "pick_heat_then_place": "hot ", "pick_cool_then_place": "cool "}
    return {
        "found": f"a {obj} is in view",
        "held": f"a {obj} is held",
        "cleaned": f"a {obj} is cleaned",
        "heated": f"a {obj} is heated",
        "cooled": f"a {obj} is cooled",
        "brought": f"a {obj} is held at a {target}",
        "examined": f"the {obj} is looked at under the lit {target}",
        "first_placed": f"one {obj} is in a {target}",
        "second_held": f"a second {obj} is held",
        "placed": (f"two {obj} are in one {target}" if task_type == "pick_two_obj_and_place"
                   else f"a {state.get(task_type, '')}{obj} is in a {target}"),
    }


def feasible_goals(room: str, lay: Layout, task_type: str) -> list[Goal]:
    """Every goal of ``task_type`` that a room of kind ``room`` with layout ``lay`` supports."""
    present = {t for t, _ in lay}
    tag, appliance = TASK_NEEDS[task_type]
    if appliance is not None and appliance not in present:
        return []
    # A transformed object does not go back into an appliance (no "put a cool egg in microwave").
    unfit = {"microwave", "fridge", "sinkbasin"} if appliance is not None else set()
    goals = []
    for obj in ROOM_OBJECTS[room]:
        tags, homes = OBJECTS[obj]
        if tag and tag not in tags:
            continue
        sources = present.intersection(homes)
        if task_type == "look_at_obj_in_light":
            goals += [(task_type, obj, lamp) for lamp in LAMPS if lamp in present and sources]
            continue
        for target in sorted(sources):
            if target not in unfit and sources - {target}:
                goals.append((task_type, obj, target))
    return goals


# ----- worlds ----------------------------------------------------------------------------------


class World:
    """The immutable part of one world: receptacles, objects, their first places, and the goal.

    Receptacles and objects are numbered by index; names (``cabinet 3``, ``mug 1``) and command
    strings are precomputed here once, so the simulator's hot path only indexes.
    """

    def __init__(self, room: str, lay: Layout, goal: Goal, objects: list[tuple[str, int]]) -> None:
        self.room, self.layout, self.goal = room, lay, goal
        self.task_type, self.goal_type, self.target_type = goal
        self.rtype = [t for t, n in lay for _ in range(n)]
        self.rname = [f"{t} {i}" for t, n in lay for i in range(1, n + 1)]
        self.rkind = [RECEPTACLES[t] for t in self.rtype]
        self.otype = [t for t, _ in objects]
        numbers: dict[str, int] = {}
        self.oname = []
        for t in self.otype:
            numbers[t] = numbers.get(t, 0) + 1
            self.oname.append(f"{t} {numbers[t]}")
        self.where0 = tuple(r for _, r in objects)
        self.contents0: list[list[int]] = [[] for _ in self.rname]
        for o, r in enumerate(self.where0):
            insort(self.contents0[r], o)
        verb = {app: v for v, app in APPLIANCE.items()}
        self.rverb = [verb.get(t) for t in self.rtype]  # heat / cool / clean, or None
        self.go = {f"go to {name}": r for r, name in enumerate(self.rname)}
        self.go_cmd = list(self.go)
        self._go_listing: dict[int, str] = {}
        self._spots: dict[int, tuple] = {}
        self.goal_objs = tuple(o for o, t in enumerate(self.otype) if t == self.goal_type)
        self.goal_mask = sum(1 << o for o in self.goal_objs)
        self.targets = tuple(r for r, t in enumerate(self.rtype) if t == self.target_type)
        self.target_set = frozenset(self.targets)
        appliance = TASK_NEEDS[self.task_type][1]
        self.appliances = tuple(r for r, t in enumerate(self.rtype) if t == appliance)
        # The object state the goal asks for: "hot", "cold" or "clean" (None: any object will do).
        self.goal_flag = {"microwave": "hot", "fridge": "cold", "sinkbasin": "clean"}.get(appliance or "")
        self.goal_text = goal_text(goal)
        self.milestones = MILESTONES[self.task_type]
        self.intro = ("You are in the middle of a room. Looking quickly around you, you see "
                      + listing(self.rname) + ".")
        self.check = hashlib.blake2b(repr((self.rname, self.oname, self.where0, goal)).encode(),
                                     digest_size=4).hexdigest()

    def go_listing(self, loc: int) -> str:
        """The ``go to`` commands admissible at ``loc``, joined (cached per location)."""
        text = self._go_listing.get(loc)
        if text is None:
            text = self._go_listing[loc] = ", ".join(c for r, c in enumerate(self.go_cmd) if r != loc)
        return text

    def spot(self, loc: int) -> tuple[str, str, str | None, str, str]:
        """Per-location constants: name, kind, appliance verb, its examine command, and the listing
        of ``go to`` commands followed by that examine command (cached)."""
        spot = self._spots.get(loc)
        if spot is None:
            if loc < 0:
                spot = ("", "", None, "", self.go_listing(loc))
            else:
                exam = "examine " + self.rname[loc]
                spot = (self.rname[loc], self.rkind[loc], self.rverb[loc], exam, self.go_listing(loc) + ", " + exam)
            self._spots[loc] = spot
        return spot


def listing(names: Sequence[str]) -> str:
    """ALFWorld's lists: ``nothing``, ``a mug 1``, ``a mug 1, and a pen 2``, ``a x, a y, and a z``."""
    if not names:
        return "nothing"
    if len(names) == 1:
        return "a " + names[0]
    return "a " + ", a ".join(names[:-1]) + ", and a " + names[-1]


@functools.lru_cache(maxsize=4096)
def build_world(difficulty: Difficulty, layout_id: str, goal: Goal, seed: int) -> World:
    """Build the world of a task from its data (deterministic; cached, Worlds are immutable)."""
    room, _ = parse_layout_id(layout_id)
    lay = layout(layout_id, difficulty)
    task_type, goal_type, target_type = goal
    rtypes = [t for t, n in lay for _ in range(n)]
    rng = Rng(seed)

    def homes(obj_type: str, exclude: str | None = None) -> list[int]:
        allowed = OBJECTS[obj_type][1]
        return [r for r, t in enumerate(rtypes) if t in allowed and t != exclude]

    n_objects = rng.randint(*difficulty.objects)
    two = task_type == "pick_two_obj_and_place"
    n_goal = (2 if two else 1) + rng.below(2)
    n_goal = max(min(n_goal, n_objects), 2 if two else 1)
    sources = homes(goal_type, exclude=target_type)
    if not sources:
        raise ValueError(f"layout {layout_id} has no place for a {goal_type} outside a {target_type}")
    placed = [(goal_type, rng.choice(sources)) for _ in range(n_goal)]
    others = [t for t in ROOM_OBJECTS[room] if t != goal_type and homes(t)]
    while len(placed) < n_objects and others:
        obj_type = others.pop(rng.below(len(others)))
        where = homes(obj_type)
        for _ in range(min(1 + (rng.below(3) == 0), n_objects - len(placed))):
            placed.append((obj_type, rng.choice(where)))
    # Objects are indexed by type (stable sort keeps the numbering in placing order).
    placed.sort(key=lambda item: item[0])
    return World(room, lay, goal, placed)


def world_from_spec(spec: dict[str, Any]) -> World:
    """A hand-written world: ``{"room": "kitchen", "receptacles": [["cabinet", 2], ...],
    "objects": [["mug", "cabinet 1"], ...], "goal": ["pick_and_place", "mug", "countertop"]}``.

    Objects are numbered per type in the order given. Unknown names raise ValueError.
    """
    room = spec["room"]
    if room not in ROOMS:
        raise ValueError(f"unknown room {room!r}; rooms: {sorted(ROOMS)}")
    lay = tuple(sorted((str(t), int(n)) for t, n in spec["receptacles"]))
    for t, n in lay:
        if t not in RECEPTACLES or n < 1:
            raise ValueError(f"bad receptacle entry {[t, n]}; types: {sorted(RECEPTACLES)}, counts >= 1")
    names = [f"{t} {i}" for t, n in lay for i in range(1, n + 1)]
    objects = []
    for obj_type, where in spec["objects"]:
        if obj_type not in OBJECTS:
            raise ValueError(f"unknown object type {obj_type!r}; types: {sorted(OBJECTS)}")
        if where not in names or RECEPTACLES[where.rsplit(" ", 1)[0]] == LAMP:
            raise ValueError(f"object {obj_type!r} is placed in {where!r}, which is not a receptacle "
                             f"of this room that holds objects: {names}")
        objects.append((obj_type, names.index(where)))
    goal = tuple(spec["goal"])
    if len(goal) != 3 or goal[0] not in TASK_TYPES:
        raise ValueError(f"goal must be [task type, object type, target type] with a task type in "
                         f"{list(TASK_TYPES)}, got {list(goal)}")
    present = {t for t, _ in lay}
    appliance = TASK_NEEDS[goal[0]][1]
    needed = 2 if goal[0] == "pick_two_obj_and_place" else 1
    if (goal[2] not in present or (appliance and appliance not in present)
            or sum(t == goal[1] for t, _ in objects) < needed):
        raise ValueError(f"goal {list(goal)} cannot be reached in this world: it needs a {goal[2]}"
                         f"{f', a {appliance}' if appliance else ''} and {needed} {goal[1]}")
    objects.sort(key=lambda item: item[0])
    return World(room, lay, goal, objects)  # type: ignore[arg-type]


def layout_signature(layout_id: str, difficulty: Difficulty) -> tuple[str, Layout]:
    """What makes two layouts the same: the room kind and its receptacles."""
    return parse_layout_id(layout_id)[0], layout(layout_id, difficulty)


__all__ = [
    "CONTAINER", "LAMP", "Difficulty", "Goal", "Layout", "MILESTONES", "PRESETS", "Rng", "World", "build_world",
    "feasible_goals", "goal_text", "heldout", "layout", "layout_signature", "listing", "milestone_descriptions",
    "parse_layout_id", "stable_int", "world_from_spec",
]
