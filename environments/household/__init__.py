"""Household: an ALFWorld-style text world, procedurally generated (``household-v0``).

The agent is in a room (kitchen, bathroom, bedroom or living room) with numbered receptacles and
objects, and a goal of one of ALFWorld's six task types. See :class:`HouseholdEnv`.
"""

from agentgym.environments.household.env import HouseholdEnv
from agentgym.environments.household.generation import SUITES, sample_task
from agentgym.environments.household.world import PRESETS, Difficulty

__all__ = ["PRESETS", "SUITES", "Difficulty", "HouseholdEnv", "sample_task"]
