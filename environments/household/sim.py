"""The household simulator: state, ALFWorld's command language, observations, milestones, expert.

Synchronous plain Python on ints and bitmasks, no pydantic: :class:`HouseholdEnv` wraps it for
the agentgym API, and the suite generator and benchmarks drive it directly.

The dynamic state is the agent's location (a receptacle index, -1 for the middle of the room),
the held object (-1: none), each object's receptacle (-1: held), and bitmasks of open
receptacles, lit lamps, and hot, cold and clean objects. After every change the admissible
commands are rebuilt into a dict (command text -> operation), so executing a command is one
lookup and the listing shown to the agent is exactly what would be accepted.
"""

from __future__ import annotations

import re
from bisect import insort
from typing import Iterator

from agentgym.environments.household.world import CONTAINER, LAMP, World, listing

GO, OPEN, CLOSE, TAKE, PUT, HEAT, COOL, CLEAN, USE, EXAMINE_R, EXAMINE_O, INVENTORY, LOOK = range(13)
_VERB_OP = {"heat": HEAT, "cool": COOL, "clean": CLEAN}
NOTHING = "Nothing happens."
_INVENTORY, _LOOK = (INVENTORY, 0), (LOOK, 0)

_PUT = re.compile(r"^put (.+?) (?:in/on|in|on|into|onto|inside) (.+)$")
_PREFIX = re.compile(r"^(?:>\s*|action\s*\d*\s*:\s*|command\s*:\s*)+")


def normalize(text: str) -> str:
    """Reduce a command written by a model to the canonical form used in the admissible list.

    Case and runs of whitespace do not matter; a ``> `` or ``Action:`` prefix, quotes, a trailing
    period and the word "the" are dropped; only the first line counts (or the first line that
    starts with ``Action:``). ``put X in Y`` and ``put X on Y`` mean ``put X in/on Y``.
    """
    lines = [ln for ln in text.lower().splitlines() if ln.strip()]
    if not lines:
        return ""
    line = next((ln for ln in lines if ln.lstrip().startswith("action")), lines[0])
    s = _PREFIX.sub("", " ".join(line.split()))
    s = s.strip("`'\"*.! ")
    s = (" " + s).replace(" the ", " ").strip()
    if s.startswith("put "):
        m = _PUT.match(s)
        if m:
            s = f"put {m[1]} in/on {m[2]}"
    elif s.startswith("goto "):
        s = "go to " + s[5:]
    elif " using " in s:
        s = s.replace(" using ", " with ")
    return s


_PREDICATES = {
    "found": "_found", "held": "_holding_goal", "heated": "_heated", "cooled": "_cooled", "cleaned": "_cleaned",
    "brought": "_brought", "first_placed": "_goal_placed", "second_held": "_second_held", "placed": "success",
    "examined": "success",
}


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class Simulator:
    """One household episode at a time: load a :class:`World`, then execute commands.

    Args:
        show_commands: Whether each observation ends with the list of admissible commands.
    """

    __slots__ = ("show_commands", "w", "loc", "hold", "where", "contents", "opened", "lit", "hot", "cold",
                 "clean", "moved", "succeeded", "_cmds", "_acts", "_listing", "_key", "_plan", "_checks")

    def __init__(self, show_commands: bool = True) -> None:
        self.show_commands = show_commands
        self._plan: list[str] | None = None

    # ----- episode ---------------------------------------------------------------------------
    def load(self, world: World) -> str:
        """Start an episode in ``world``; returns the first observation (room, goal, commands)."""
        self.w = world
        self.loc = self.hold = -1
        self.where = list(world.where0)
        self.contents = [c.copy() for c in world.contents0]
        self.opened = self.lit = self.hot = self.cold = self.clean = self.moved = 0
        self.succeeded = False
        self._key = None
        self._plan = None
        self._checks = [(m, getattr(self, _PREDICATES[m])) for m in world.milestones]
        self._refresh()
        return f"{world.intro}\n\nYour task is to: {world.goal_text}{self._listing}"

    def execute(self, command: str) -> tuple[str, bool, bool]:
        """Run one command; returns ``(observation, valid, state_changed)``.

        An inadmissible command returns ``"Nothing happens."`` with ``valid=False`` and leaves the
        state as it was.
        """
        entry = self._lookup(command)
        if entry is None:
            command = normalize(command)
            entry = self._lookup(command)
            if entry is None:
                return NOTHING + self._listing, False, False
        op, x = entry
        w = self.w
        if op >= EXAMINE_R:  # looking changes nothing
            if op == EXAMINE_R:
                text = self._view(x)
            elif op == EXAMINE_O:
                text = self._describe(x)
            elif op == INVENTORY:
                text = (f"You are carrying: a {w.oname[self.hold]}." if self.hold >= 0
                        else "You are not carrying anything.")
            else:
                text = w.intro if self.loc < 0 else f"You are facing the {w.rname[self.loc]}. {self._view(self.loc)}"
            return text + self._listing, True, False
        plan = self._plan
        if plan and plan[-1] == command:
            plan.pop()
        else:
            self._plan = None
        if op == GO:
            self.loc = x
            text = f"You arrive at {w.rname[x]}. {self._view(x)}"
        elif op == TAKE:
            r = self.loc
            self.contents[r].remove(x)
            self.where[x] = -1
            self.hold = x
            self.moved &= ~(1 << x)
            text = f"You pick up the {w.oname[x]} from the {w.rname[r]}."
        elif op == PUT:
            r = self.loc
            insort(self.contents[r], x)
            self.where[x] = r
            self.hold = -1
            if r != w.where0[x]:
                self.moved |= 1 << x
            text = f"You put the {w.oname[x]} in/on the {w.rname[r]}."
        elif op == OPEN:
            self.opened |= 1 << x
            text = f"You open the {w.rname[x]}. {self._view(x)}"
        elif op == CLOSE:
            self.opened &= ~(1 << x)
            text = f"You close the {w.rname[x]}."
        elif op == HEAT:
            self.hot |= 1 << x
            self.cold &= ~(1 << x)
            text = f"You heat the {w.oname[x]} using the {w.rname[self.loc]}."
        elif op == COOL:
            self.cold |= 1 << x
            self.hot &= ~(1 << x)
            text = f"You cool the {w.oname[x]} using the {w.rname[self.loc]}."
        elif op == CLEAN:
            self.clean |= 1 << x
            text = f"You clean the {w.oname[x]} using the {w.rname[self.loc]}."
        else:  # USE
            self.lit ^= 1 << x
            text = f"You turn {'on' if self.lit >> x & 1 else 'off'} the {w.rname[x]}."
        self._key = None
        self.succeeded = self._success()
        self._refresh()
        return text + self._listing, True, True

    def _lookup(self, command: str) -> tuple[int, int] | None:
        entry = self._cmds.get(command)
        if entry is not None:
            return entry
        r = self.w.go.get(command)
        return (GO, r) if r is not None and r != self.loc else None

    def _refresh(self) -> None:
        """Rebuild the admissible commands (and their listing) for the current state."""
        w, loc, hold = self.w, self.loc, self.hold
        name, kind, verb, exam, tail = w.spot(loc)
        cmds: dict[str, tuple[int, int]] = {}
        acts = []
        if loc >= 0:
            if kind == CONTAINER:
                reachable = bool(self.opened >> loc & 1)
                command = ("close " if reachable else "open ") + name
                cmds[command] = (CLOSE if reachable else OPEN, loc)
                acts.append(command)
            else:
                reachable = kind != LAMP
            if reachable:
                if hold < 0:
                    oname = w.oname
                    for o in self.contents[loc]:
                        command = f"take {oname[o]} from {name}"
                        cmds[command] = (TAKE, o)
                        acts.append(command)
                else:
                    command = f"put {w.oname[hold]} in/on {name}"
                    cmds[command] = (PUT, hold)
                    acts.append(command)
            if verb is not None and hold >= 0:
                command = f"{verb} {w.oname[hold]} with {name}"
                cmds[command] = (_VERB_OP[verb], hold)
                acts.append(command)
            elif kind == LAMP:
                command = "use " + name
                cmds[command] = (USE, loc)
                acts.append(command)
            cmds[exam] = (EXAMINE_R, loc)
        if hold >= 0:
            command = "examine " + w.oname[hold]
            cmds[command] = (EXAMINE_O, hold)
            tail += ", " + command
        cmds["inventory"] = _INVENTORY
        cmds["look"] = _LOOK
        self._cmds = cmds
        self._acts = acts
        if self.show_commands:
            self._listing = ("\nAvailable commands: " + ", ".join(acts) + ", " + tail if acts
                             else "\nAvailable commands: " + tail) + ", inventory, look"
        else:
            self._listing = ""

    def admissible(self) -> list[str]:
        """The admissible commands in the current state, in the order they are listed."""
        w, loc = self.w, self.loc
        exams = ["examine " + w.rname[loc]] if loc >= 0 else []
        if self.hold >= 0:
            exams.append("examine " + w.oname[self.hold])
        return [*self._acts, *(c for r, c in enumerate(w.go_cmd) if r != loc), *exams, "inventory", "look"]

    # ----- rendering -------------------------------------------------------------------------
    def _view(self, r: int) -> str:
        w = self.w
        kind, name = w.rkind[r], w.rname[r]
        if kind == LAMP:
            return f"The {name} is {'on' if self.lit >> r & 1 else 'off'}."
        if kind == CONTAINER:
            if not self.opened >> r & 1:
                return f"The {name} is closed."
            return f"The {name} is open. In it, you see {listing([w.oname[o] for o in self.contents[r]])}."
        return f"On the {name}, you see {listing([w.oname[o] for o in self.contents[r]])}."

    def _describe(self, o: int) -> str:
        states = [s for s, mask in (("clean", self.clean), ("hot", self.hot), ("cool", self.cold)) if mask >> o & 1]
        return f"This is a {', '.join(states) if states else 'normal'} {self.w.oname[o]}."

    # ----- credit signals ----------------------------------------------------------------------
    def state_key(self) -> str:
        """Canonical text of the dynamic state (location, inventory, moved objects, open, lit, hot/cool/clean)."""
        key = self._key
        if key is None:
            w = self.w
            rname, oname = w.rname, w.oname
            key = "at " + (rname[self.loc] if self.loc >= 0 else "middle")
            if self.hold >= 0:
                key += "; holding " + oname[self.hold]
            if self.moved:
                where = self.where
                key += "; moved " + ", ".join([f"{oname[o]} in {rname[where[o]]}" for o in _bits(self.moved)])
            if self.opened:
                key += "; open " + ", ".join([rname[r] for r in _bits(self.opened)])
            if self.lit:
                key += "; lit " + ", ".join([rname[r] for r in _bits(self.lit)])
            if self.hot:
                key += "; hot " + ", ".join([oname[o] for o in _bits(self.hot)])
            if self.cold:
                key += "; cool " + ", ".join([oname[o] for o in _bits(self.cold)])
            if self.clean:
                key += "; clean " + ", ".join([oname[o] for o in _bits(self.clean)])
            self._key = key
        return key

    def _holding_goal(self) -> bool:
        return self.hold >= 0 and bool(self.w.goal_mask >> self.hold & 1)

    def _goal_placed(self) -> bool:
        where, targets = self.where, self.w.target_set
        return any(where[o] in targets for o in self.w.goal_objs)

    def success(self) -> bool:
        """Whether the goal holds in the current state."""
        return self.succeeded

    def _success(self) -> bool:
        w = self.w
        task_type = w.task_type
        if task_type == "look_at_obj_in_light":
            return self._holding_goal() and self.loc in w.target_set and bool(self.lit >> self.loc & 1)
        where, targets = self.where, w.target_set
        if task_type == "pick_two_obj_and_place":
            seen = set()
            for o in w.goal_objs:
                r = where[o]
                if r in targets:
                    if r in seen:
                        return True
                    seen.add(r)
            return False
        flags = getattr(self, w.goal_flag) if w.goal_flag else -1
        for o in w.goal_objs:
            if where[o] in targets and flags >> o & 1:
                return True
        return False

    def _found(self) -> bool:
        if self._holding_goal():
            return True
        w, loc = self.w, self.loc
        if loc < 0 or w.rkind[loc] == LAMP or (w.rkind[loc] == CONTAINER and not self.opened >> loc & 1):
            return False
        mask = w.goal_mask
        return any(mask >> o & 1 for o in self.contents[loc])

    def _heated(self) -> bool:
        return bool(self.hot & self.w.goal_mask)

    def _cooled(self) -> bool:
        return bool(self.cold & self.w.goal_mask)

    def _cleaned(self) -> bool:
        return bool(self.clean & self.w.goal_mask)

    def _brought(self) -> bool:
        return self._holding_goal() and self.loc in self.w.target_set

    def _second_held(self) -> bool:
        return self._holding_goal() and self._goal_placed()

    def milestones_now(self, skip: list[str] | tuple[str, ...] = ()) -> list[str]:
        """The task's milestones that hold in the current state, except those in ``skip``."""
        return [m for m, holds in self._checks if m not in skip and holds()]

    # ----- snapshots -----------------------------------------------------------------------------
    def snapshot(self) -> tuple:
        """An immutable copy of the state (the World is shared: it never changes)."""
        return (self.w, self.loc, self.hold, tuple(self.where), self.opened, self.lit, self.hot, self.cold,
                self.clean)

    def restore(self, snap: tuple) -> None:
        """Return to a state from :meth:`snapshot`."""
        self.w, self.loc, self.hold, where, self.opened, self.lit, self.hot, self.cold, self.clean = snap
        self.where = list(where)
        self.contents = contents = [[] for _ in self.w.rname]
        where0 = self.w.where0
        self.moved = 0
        for o, r in enumerate(where):
            if r >= 0:
                contents[r].append(o)
                if r != where0[o]:
                    self.moved |= 1 << o
        self._checks = [(m, getattr(self, _PREDICATES[m])) for m in self.w.milestones]
        self.succeeded = self._success()
        self._key = None
        self._plan = None
        self._refresh()

    # ----- policies ------------------------------------------------------------------------------
    def expert_action(self) -> str:
        """The next command of the expert's plan from the current state (replans when needed)."""
        if not self._plan:
            self._plan = self.expert_plan()[::-1]
        return self._plan[-1] if self._plan else "look"

    def expert_plan(self) -> list[str]:
        """A shortest-ish command sequence that reaches the goal from the current state.

        For one-object goals every (object, appliance, target) route is tried and the shortest
        kept; "two objects" goals pick the target and then each object greedily. A held object
        that is no use is put down where the next goal object is taken from.
        """
        if self.success():
            return []
        w = self.w
        flags = getattr(self, w.goal_flag) if w.goal_flag else -1
        apps = w.appliances or (-1,)
        if w.task_type != "pick_two_obj_and_place":
            state = (self.loc, self.hold, self.opened)
            objs = (self.hold,) if self._holding_goal() else w.goal_objs
            routes = [self._route(o, a, t, state, flags)[0] for o in objs for a in apps for t in w.targets]
            return min(routes, key=len)
        best: list[str] | None = None
        for t in w.targets:
            cmds: list[str] = []
            state = (self.loc, self.hold, self.opened)
            used = {o for o in w.goal_objs if self.where[o] == t}
            while len(used) < 2:
                objs = ((state[1],) if state[1] >= 0 and w.goal_mask >> state[1] & 1
                        else [o for o in w.goal_objs if o not in used])
                step, state, o = min((self._route(o, -1, t, state, flags) + (o,) for o in objs),
                                     key=lambda item: len(item[0]))
                cmds += step
                used.add(o)
            if best is None or len(cmds) < len(best):
                best = cmds
        assert best is not None
        return best

    def _route(self, o: int, app: int, target: int, state: tuple[int, int, int],
               flags: int) -> tuple[list[str], tuple[int, int, int]]:
        """Commands that bring object ``o`` (via appliance ``app``) to ``target``, and the state after."""
        w = self.w
        loc, hold, opened = state
        cmds = []
        if hold != o:
            src = self.where[o]
            if loc != src:
                cmds.append(w.go_cmd[src])
                loc = src
            if w.rkind[src] == CONTAINER and not opened >> src & 1:
                cmds.append("open " + w.rname[src])
                opened |= 1 << src
            if hold >= 0:  # put the useless object down where the useful one was
                cmds.append(f"put {w.oname[hold]} in/on {w.rname[src]}")
            cmds.append(f"take {w.oname[o]} from {w.rname[src]}")
        if app >= 0 and not flags >> o & 1:
            if loc != app:
                cmds.append(w.go_cmd[app])
                loc = app
            cmds.append(f"{w.rverb[app]} {w.oname[o]} with {w.rname[app]}")
        if loc != target:
            cmds.append(w.go_cmd[target])
            loc = target
        if w.task_type == "look_at_obj_in_light":
            if not self.lit >> target & 1:
                cmds.append("use " + w.rname[target])
            return cmds, (loc, o, opened)
        if w.rkind[target] == CONTAINER and not opened >> target & 1:
            cmds.append("open " + w.rname[target])
            opened |= 1 << target
        cmds.append(f"put {w.oname[o]} in/on {w.rname[target]}")
        return cmds, (loc, -1, opened)
