"""household-v0: commands and observations, invalid actions, milestones, state keys, snapshots,
the expert and random policies, and trajectories that round-trip through JSON."""

from __future__ import annotations

import random

import gymnasium
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentgym as ag
from agentgym.environments.household import Difficulty, HouseholdEnv, sample_task
from agentgym.environments.household.env import world_of
from agentgym.environments.household.sim import Simulator, normalize
from agentgym.environments.household.vocab import TASK_TYPES
from agentgym.types import Step, ToolCall, Trajectory

KITCHEN = {
    "room": "kitchen",
    "receptacles": [["cabinet", 2], ["countertop", 1], ["fridge", 1], ["microwave", 1], ["sinkbasin", 1]],
    "objects": [["mug", "cabinet 1"], ["apple", "countertop 1"], ["egg", "fridge 1"]],
    "goal": ["pick_heat_then_place", "mug", "countertop"],
}
BEDROOM = {
    "room": "bedroom",
    "receptacles": [["bed", 1], ["desk", 1], ["desklamp", 1], ["drawer", 1]],
    "objects": [["book", "desk 1"], ["pen", "drawer 1"]],
    "goal": ["look_at_obj_in_light", "book", "desklamp"],
}
MILESTONES = {
    "pick_heat_then_place": [ag.types.Milestone(id=m) for m in ("found", "held", "heated", "placed")],
    "look_at_obj_in_light": [ag.types.Milestone(id=m) for m in ("found", "held", "brought", "examined")],
}


def hand_task(spec: dict, **kw) -> ag.Task:
    return ag.Task(id="hand", env="household-v0", data=spec, milestones=MILESTONES[spec["goal"][0]], **kw)


def head(observation: str) -> str:
    """The observation without its list of available commands."""
    return observation.split("\nAvailable commands: ")[0]


def commands_listed(observation: str) -> list[str]:
    return observation.split("\nAvailable commands: ")[1].split(", ")


async def kitchen(**options) -> HouseholdEnv:
    env = HouseholdEnv(**options)
    await env.reset(hand_task(KITCHEN))
    return env


# ----- the environment through the agentgym and gymnasium APIs ---------------------------------


async def test_make_returns_a_household_with_one_act_tool():
    env = ag.make("household-v0")
    assert isinstance(env, HouseholdEnv)
    assert [t.name for t in env.tools] == ["act"]
    assert env.tools[0].parameters["required"] == ["command"]
    await env.aclose()


def test_gymnasium_make_runs_an_expert_episode():
    genv = gymnasium.make("agentgym/household-v0", suite="easy-test-seen")
    obs, info = genv.reset(seed=3)
    assert "Your task is to: " in obs and info["state_key"] == "at middle"
    inner = genv.unwrapped.agent_env
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = genv.step(inner.expert_action())
        assert info["valid"]
    assert terminated and reward == 1.0 and info["success"]
    genv.close()


def test_gymnasium_env_checker_passes():
    from gymnasium.utils.env_checker import check_env

    genv = gymnasium.make("agentgym/household-v0", suite="easy-test-seen").unwrapped
    check_env(genv, skip_render_check=True)
    genv.close()


async def test_first_observation_and_prompt_state_the_goal_alfworld_style():
    env = ag.make("household-v0")
    obs = await env.reset(hand_task(KITCHEN))
    assert obs == (
        "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a cabinet 2, "
        "a countertop 1, a fridge 1, a microwave 1, and a sinkbasin 1.\n\n"
        "Your task is to: put a hot mug in countertop.\n"
        "Available commands: go to cabinet 1, go to cabinet 2, go to countertop 1, go to fridge 1, "
        "go to microwave 1, go to sinkbasin 1, inventory, look")
    task = ag.load_tasks("household-v0", "train")[0]
    assert task.prompt.startswith("Your task is to: ") and task.prompt in await env.reset(task)
    assert env.goal == task.prompt.removeprefix("Your task is to: ")


# ----- every command ---------------------------------------------------------------------------


async def test_every_command_with_its_alfworld_observation():
    env = await kitchen()
    script = [
        ("look", "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a cabinet 2, "
                 "a countertop 1, a fridge 1, a microwave 1, and a sinkbasin 1."),
        ("inventory", "You are not carrying anything."),
        ("go to cabinet 1", "You arrive at cabinet 1. The cabinet 1 is closed."),
        ("examine cabinet 1", "The cabinet 1 is closed."),
        ("open cabinet 1", "You open the cabinet 1. The cabinet 1 is open. In it, you see a mug 1."),
        ("examine cabinet 1", "The cabinet 1 is open. In it, you see a mug 1."),
        ("take mug 1 from cabinet 1", "You pick up the mug 1 from the cabinet 1."),
        ("close cabinet 1", "You close the cabinet 1."),
        ("inventory", "You are carrying: a mug 1."),
        ("examine mug 1", "This is a normal mug 1."),
        ("go to sinkbasin 1", "You arrive at sinkbasin 1. On the sinkbasin 1, you see nothing."),
        ("clean mug 1 with sinkbasin 1", "You clean the mug 1 using the sinkbasin 1."),
        ("go to fridge 1", "You arrive at fridge 1. The fridge 1 is closed."),
        ("cool mug 1 with fridge 1", "You cool the mug 1 using the fridge 1."),
        ("examine mug 1", "This is a clean, cool mug 1."),
        ("go to microwave 1", "You arrive at microwave 1. The microwave 1 is closed."),
        ("heat mug 1 with microwave 1", "You heat the mug 1 using the microwave 1."),
        ("examine mug 1", "This is a clean, hot mug 1."),
        ("look", "You are facing the microwave 1. The microwave 1 is closed."),
        ("go to countertop 1", "You arrive at countertop 1. On the countertop 1, you see a apple 1."),
        ("put mug 1 in/on countertop 1", "You put the mug 1 in/on the countertop 1."),
    ]
    for command, expected in script:
        result = await env.step(command)
        assert result.valid, (command, result.observation)
        assert head(result.observation) == expected, command
    assert result.terminated and result.reward == 1.0 and env.success and env.episode_reward == 1.0
    assert env.reached == ["found", "held", "heated", "placed"]


async def test_lamps_turn_on_and_off_and_light_the_goal():
    env = HouseholdEnv()
    await env.reset(hand_task(BEDROOM))
    assert head((await env.step("go to desklamp 1")).observation) == "You arrive at desklamp 1. The desklamp 1 is off."
    assert head((await env.step("use desklamp 1")).observation) == "You turn on the desklamp 1."
    assert head((await env.step("examine desklamp 1")).observation) == "The desklamp 1 is on."
    result = await env.step("use desklamp 1")
    assert head(result.observation) == "You turn off the desklamp 1." and not result.terminated
    for command in ("go to desk 1", "take book 1 from desk 1", "go to desklamp 1"):
        assert (await env.step(command)).valid
    result = await env.step("use desklamp 1")
    assert result.terminated and result.reward == 1.0 and result.milestones == ["examined"]
    assert env.reached == ["found", "held", "brought", "examined"]


async def test_arriving_with_the_object_at_a_lit_lamp_succeeds():
    env = HouseholdEnv()
    await env.reset(hand_task(BEDROOM))
    for command in ("go to desklamp 1", "use desklamp 1", "go to desk 1", "take book 1 from desk 1"):
        assert not (await env.step(command)).terminated
    result = await env.step("go to desklamp 1")
    assert result.terminated and result.milestones == ["brought", "examined"]


async def test_listed_commands_are_exactly_the_admissible_ones():
    env = await kitchen()
    result = await env.step("go to cabinet 1")
    assert commands_listed(result.observation) == env.admissible_commands() == [
        "open cabinet 1", "go to cabinet 2", "go to countertop 1", "go to fridge 1", "go to microwave 1",
        "go to sinkbasin 1", "examine cabinet 1", "inventory", "look"]
    result = await env.step("open cabinet 1")
    assert commands_listed(result.observation)[:2] == ["close cabinet 1", "take mug 1 from cabinet 1"]


async def test_commands_can_be_left_out_of_observations():
    env = await kitchen(show_commands=False)
    result = await env.step("go to cabinet 1")
    assert result.observation == "You arrive at cabinet 1. The cabinet 1 is closed."
    assert "open cabinet 1" in env.admissible_commands()


def test_every_listed_command_is_accepted_and_nothing_else():
    """In states along random walks, each listed command runs, and every other well-formed one is refused."""
    rng = random.Random(0)
    sim = Simulator()
    for task in ag.load_tasks("household-v0", "test-seen")[:40]:
        world = world_of(task)
        sim.load(world)
        every = {f"{verb} {r}" for r in world.rname for verb in ("go to", "open", "close", "use", "examine")}
        every |= {f"take {o} from {r}" for o in world.oname for r in world.rname}
        every |= {f"{verb} {o} with {r}" for o in world.oname for r in world.rname
                  for verb in ("heat", "cool", "clean")}
        every |= {f"put {o} in/on {r}" for o in world.oname for r in world.rname}
        every |= {f"examine {o}" for o in world.oname} | {"inventory", "look"}
        for _ in range(12):
            listed = sim.admissible()
            snap = sim.snapshot()
            for command in listed:
                assert sim.execute(command)[1], command
                sim.restore(snap)
            for command in every - set(listed):
                assert sim.execute(command)[:2] == ("Nothing happens." + sim._listing, False), command
            sim.execute(rng.choice(listed))


# ----- invalid commands and plain text ---------------------------------------------------------


@pytest.mark.parametrize("command", [
    "take mug 1 from cabinet 1",       # not there yet
    "go to cabinet 9",                 # no such receptacle
    "open countertop 1",               # not there, and countertops do not open
    "put apple 1 in/on countertop 1",  # not holding it
    "heat mug 1 with microwave 1",
    "use desklamp 1",
    "examine mug 1",                   # not held
    "dance",
    "",
])
async def test_inadmissible_commands_say_nothing_happens_and_change_nothing(command):
    env = await kitchen()
    key = env.state_key()
    result = await env.step(command)
    assert head(result.observation) == "Nothing happens." and not result.valid
    assert result.info["error"].startswith("Nothing happens.")
    assert result.state_key == key and env.turn == 1 and not result.terminated


@pytest.mark.parametrize("command", [
    "go to cabinet 1",      # already there
    "close cabinet 1",      # already closed
    "take mug 1 from cabinet 1",  # closed
    "put mug 1 in/on cabinet 1",  # not holding
    "go to cabinet1",
])
async def test_inadmissible_at_a_closed_cabinet(command):
    env = await kitchen()
    await env.step("go to cabinet 1")
    result = await env.step(command)
    assert head(result.observation) == "Nothing happens." and not result.valid


async def test_one_object_at_a_time():
    env = await kitchen()
    for command in ("go to countertop 1", "take apple 1 from countertop 1", "go to cabinet 1", "open cabinet 1"):
        assert (await env.step(command)).valid
    assert not (await env.step("take mug 1 from cabinet 1")).valid
    assert "take mug 1 from cabinet 1" not in env.admissible_commands()


@pytest.mark.parametrize("text", [
    "go to cabinet 1", "Go To Cabinet 1.", "> go to cabinet 1", "  go   to\tcabinet 1  ", "go to the cabinet 1",
    "go to cabinet 1\nThe mug is probably there.", "Action: go to cabinet 1",
    "Thought: find the mug.\nAction: go to cabinet 1",
    "`go to cabinet 1`", "goto cabinet 1",
    'act(command="go to cabinet 1")', '{"name": "act", "arguments": {"command": "go to cabinet 1"}}',
    '<tool_call>{"name": "act", "arguments": {"command": "Go to cabinet 1."}}</tool_call>',
])
async def test_plain_text_and_tool_calls_are_both_accepted(text):
    env = await kitchen()
    result = await env.step(text)
    assert result.valid and head(result.observation) == "You arrive at cabinet 1. The cabinet 1 is closed."


@pytest.mark.parametrize("text", [
    "put mug 1 in countertop 1", "put mug 1 on countertop 1", "Put the mug 1 on the countertop 1."])
async def test_put_accepts_in_or_on(text):
    env = await kitchen()
    for command in ("go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1", "go to countertop 1"):
        await env.step(command)
    assert (await env.step(text)).valid


def test_normalize_examples():
    assert normalize("> Heat the mug 1 using the microwave 1.") == "heat mug 1 with microwave 1"
    assert normalize("\n\n  PUT apple 2 INTO fridge 1!\nmore") == "put apple 2 in/on fridge 1"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_is_an_observation_never_an_exception(text):
    sim = Simulator()
    sim.load(world_of(hand_task(KITCHEN)))
    observation, valid, changed = sim.execute(text)
    assert isinstance(observation, str) and (valid or not changed)


async def test_a_wrong_tool_is_an_error_observation():
    env = await kitchen()
    result = await env.step(ToolCall(name="go", arguments={"target": "cabinet 1"}))
    assert not result.valid and "unknown tool 'go'" in result.observation and "act" in result.observation


async def test_truncated_at_max_turns_not_terminated():
    env = HouseholdEnv()
    task = ag.load_tasks("household-v0", "easy-test-seen")[0]
    await env.reset(task)
    assert task.max_turns == 10
    results = [await env.step("look") for _ in range(task.max_turns)]
    assert [r.truncated for r in results] == [False] * 9 + [True]
    assert not any(r.terminated for r in results)


# ----- task types and milestones ---------------------------------------------------------------


@pytest.mark.parametrize("task_type", TASK_TYPES)
async def test_each_task_type_reaches_its_milestones_in_order(task_type):
    env = HouseholdEnv()
    tasks = [t for t in ag.load_tasks("household-v0", "train") if t.data["goal"][0] == task_type][:20]
    assert len(tasks) == 20
    for task in tasks:
        await env.reset(task)
        reported = []
        while not env.done:
            result = await env.step(env.expert_action())
            assert result.valid
            reported += result.milestones
            assert result.reward == (1.0 if result.terminated else 0.0)
        assert reported == [m.id for m in task.milestones], task.id
        assert env.success and result.info["success"]


async def test_milestones_count_once():
    env = await kitchen()
    rewarded = []
    for command in ("go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1", "put mug 1 in/on cabinet 1",
                    "take mug 1 from cabinet 1", "go to microwave 1", "heat mug 1 with microwave 1",
                    "heat mug 1 with microwave 1"):
        rewarded.append((await env.step(command)).milestones)
    assert rewarded == [[], ["found"], ["held"], [], [], [], ["heated"], []]


async def test_pick_two_needs_two_in_the_same_receptacle():
    spec = {"room": "kitchen", "receptacles": [["countertop", 2], ["shelf", 1]],
            "objects": [["cup", "shelf 1"], ["cup", "shelf 1"]],
            "goal": ["pick_two_obj_and_place", "cup", "countertop"]}
    env = HouseholdEnv()
    await env.reset(ag.Task(id="two", env="household-v0", data=spec))
    for command in ("go to shelf 1", "take cup 1 from shelf 1", "go to countertop 1", "put cup 1 in/on countertop 1",
                    "go to shelf 1", "take cup 2 from shelf 1", "go to countertop 2"):
        assert not (await env.step(command)).terminated
    assert not (await env.step("put cup 2 in/on countertop 2")).terminated
    for command in ("take cup 2 from countertop 2", "go to countertop 1"):
        await env.step(command)
    result = await env.step("put cup 2 in/on countertop 1")
    assert result.terminated and result.reward == 1.0
    assert env.reached == ["found", "held", "first_placed", "second_held", "placed"]


def test_hand_written_worlds_are_checked():
    bad = dict(KITCHEN, goal=["pick_heat_then_place", "mug", "diningtable"])
    with pytest.raises(ValueError, match="cannot be reached"):
        world_of(hand_task(bad))
    with pytest.raises(ValueError, match="not a receptacle"):
        world_of(hand_task(dict(KITCHEN, objects=[["mug", "cabinet 7"]])))


# ----- state keys ------------------------------------------------------------------------------


async def keys_after(*commands: str) -> str:
    env = await kitchen()
    for command in commands:
        assert (await env.step(command)).valid, command
    return env.state_key()


async def test_same_state_same_key_whatever_the_history():
    assert await keys_after("go to cabinet 2", "go to cabinet 1") == await keys_after("go to cabinet 1")
    assert (await keys_after("go to cabinet 1", "open cabinet 1", "close cabinet 1")
            == await keys_after("go to cabinet 1"))
    assert await keys_after("go to countertop 1", "take apple 1 from countertop 1", "look", "inventory",
                            "put apple 1 in/on countertop 1") == await keys_after("go to countertop 1")
    assert (await keys_after("go to countertop 1", "take apple 1 from countertop 1", "go to cabinet 1",
                             "open cabinet 1", "put apple 1 in/on cabinet 1", "take apple 1 from cabinet 1",
                             "go to countertop 1", "put apple 1 in/on countertop 1", "go to cabinet 1")
            == await keys_after("go to cabinet 1", "open cabinet 1"))


async def test_different_states_different_keys():
    histories = [
        (), ("go to cabinet 1",), ("go to cabinet 1", "open cabinet 1"),
        ("go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1"),
        ("go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1", "close cabinet 1"),
        ("go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1", "go to microwave 1"),
        ("go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1", "go to microwave 1",
         "heat mug 1 with microwave 1"),
        ("go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1", "go to fridge 1",
         "cool mug 1 with fridge 1"),
        ("go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1", "go to sinkbasin 1",
         "clean mug 1 with sinkbasin 1"),
        ("go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1", "go to sinkbasin 1",
         "put mug 1 in/on sinkbasin 1"),
        ("go to countertop 1", "take apple 1 from countertop 1"),
    ]
    keys = [await keys_after(*h) for h in histories]
    assert len(set(keys)) == len(keys), keys
    assert keys[0] == "at middle"
    assert keys[6] == "at microwave 1; holding mug 1; open cabinet 1; hot mug 1"


async def test_state_key_is_in_every_step_result_and_ignores_turns():
    env = await kitchen()
    first = await env.step("look")
    second = await env.step("inventory")
    assert first.state_key == second.state_key == env.state_key() == "at middle"


# ----- snapshots -------------------------------------------------------------------------------


async def record(env: HouseholdEnv, commands: list[str]) -> list[tuple]:
    out = []
    for command in commands:
        r = await env.step(command)
        out.append((r.observation, r.reward, r.milestones, r.terminated, r.truncated, r.valid, r.state_key))
    return out


async def test_snapshot_restore_round_trips_mid_episode():
    env = HouseholdEnv()
    rng = random.Random(1)
    for task in ag.load_tasks("household-v0", "test-unseen")[:30]:
        await env.reset(task)
        for _ in range(rng.randrange(6)):
            await env.step(env.random_action(rng))
        if env.done:
            continue
        snap = env.snapshot()
        key, turn, reached = env.state_key(), env.turn, list(env.reached)
        tail = [env.random_action(rng) for _ in range(2)]
        for command in tail:
            await env.step(command)
        while not env.done and env.turn < task.max_turns:
            command = env.expert_action()
            tail.append(command)
            await env.step(command)
        env.restore(snap)
        assert (env.state_key(), env.turn, env.reached) == (key, turn, reached)
        first = await record(env, tail)
        env.restore(snap)
        assert await record(env, tail) == first
        assert first[-1][3] or first[-1][4]


async def test_restore_works_across_a_reset_and_between_instances():
    tasks = ag.load_tasks("household-v0", "easy-test-unseen")
    env, other = HouseholdEnv(), HouseholdEnv()
    await env.reset(tasks[0])
    await env.step(env.expert_action())
    snap = env.snapshot()
    rest = []
    while not env.done:
        rest.append(env.expert_action())
        await env.step(rest[-1])
    env.restore(snap)
    expected = await record(env, rest)
    await env.reset(tasks[1])
    env.restore(snap)
    assert await record(env, rest) == expected
    other.restore(snap)
    assert other.task == tasks[0] and await record(other, rest) == expected
    assert expected[-1][1] == 1.0


async def test_snapshots_are_immutable_values():
    env = await kitchen()
    snap = env.snapshot()
    hash(snap[2])
    await record(env, ["go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1"])
    assert env.snapshot()[2] != snap[2]
    env.restore(snap)
    assert env.state_key() == "at middle" and env.turn == 0 and env.reached == []


# ----- policies --------------------------------------------------------------------------------


async def test_expert_solves_every_task_of_every_suite():
    env = HouseholdEnv()
    for suite in ag.registry.suites("household-v0"):
        for task in ag.load_tasks("household-v0", suite):
            await env.reset(task)
            while not env.done:
                result = await env.step(env.expert_action())
                assert result.valid and not result.truncated, (task.id, result.observation)
            assert env.success, task.id


def test_expert_recovers_from_random_detours():
    rng = random.Random(7)
    sim = Simulator(show_commands=False)
    for suite in ("test-seen", "easy-test-unseen"):
        for task in ag.load_tasks("household-v0", suite)[:150]:
            sim.load(world_of(task))
            for _ in range(rng.randrange(12)):
                if sim.success():
                    break
                sim.execute(rng.choice(sim.admissible()))
            for _ in range(40):
                if sim.success():
                    break
                assert sim.execute(sim.expert_action())[1]
            assert sim.success(), task.id


async def test_random_policy_picks_admissible_commands_and_rarely_wins():
    env = HouseholdEnv()
    rng = random.Random(0)
    wins = 0
    tasks = ag.load_tasks("household-v0", "easy-test-seen")
    for task in tasks:
        await env.reset(task)
        result = None
        while result is None or not (result.terminated or result.truncated):
            result = await env.step(env.random_action(rng))
            assert result.valid
        wins += env.success
    assert wins / len(tasks) < 0.2


# ----- difficulty and on-the-fly tasks ---------------------------------------------------------


async def test_seed_only_tasks_are_drawn_at_the_env_difficulty():
    env = HouseholdEnv(difficulty="easy")
    obs = await env.reset(ag.Task(id="fresh", env="household-v0", data={"seed": 5}))
    assert env.task.id == "fresh" and env.task.max_turns == 10 and env.task.milestones
    assert len(world_of(env.task).rname) <= 6 and "Your task is to: " in obs
    assert sample_task(5, "easy") == sample_task(5, "easy").model_copy()
    while not env.done:
        await env.step(env.expert_action())
    assert env.success


def test_difficulty_presets_and_errors():
    easy = Difficulty.of("easy")
    assert easy.receptacles == (4, 6) and easy.max_plan == 5 and easy.to_data() == "easy"
    assert Difficulty.of("default").max_turns == 50
    custom = Difficulty(receptacles=(3, 5), objects=(2, 3), task_types=("pick_and_place",), max_turns=8)
    assert Difficulty.of(custom.to_data()) == custom
    with pytest.raises(ValueError, match="unknown difficulty 'hard'"):
        HouseholdEnv(difficulty="hard")
    with pytest.raises(ValueError, match="max_turns must be positive, got 0"):
        Difficulty(max_turns=0)
    with pytest.raises(ValueError, match="task_types"):
        Difficulty(task_types=("juggle",))


async def test_custom_difficulty_tasks_solve():
    custom = Difficulty(receptacles=(3, 4), objects=(1, 2), task_types=("pick_two_obj_and_place",), max_turns=12)
    env = HouseholdEnv(difficulty=custom)
    for seed in range(10):
        await env.reset(ag.Task(id=f"c{seed}", env="household-v0", data={"seed": seed}))
        assert env.task.data["difficulty"] == custom.to_data()
        while not env.done:
            await env.step(env.expert_action())
        assert env.success


async def test_easy_observations_are_short():
    env = HouseholdEnv()
    longest = 0
    for task in ag.load_tasks("household-v0", "easy-test-unseen"):
        longest = max(longest, len(await env.reset(task)))
        while not env.done:
            longest = max(longest, len((await env.step(env.expert_action())).observation))
    assert longest < 700  # characters: under about 200 tokens


# ----- trajectories ----------------------------------------------------------------------------


async def test_expert_trajectory_round_trips_through_json():
    env = HouseholdEnv()
    task = ag.load_tasks("household-v0", "test-unseen")[3]
    first = await env.reset(task)
    steps = []
    while not env.done:
        anchor = env.state_key()
        command = env.expert_action()
        call = ToolCall(name="act", arguments={"command": command}, id=f"call_{env.turn}")
        result = await env.step(call)
        steps.append(Step(index=len(steps), state_key=anchor, response=command, action=call, result=result,
                          messages=[ag.types.Message(role="user", content=first)] if not steps else None))
    traj = Trajectory(id="t0", group_id="g0", task_id=task.id, env=task.env, seed=0, steps=steps,
                      reward=env.episode_reward, success=env.success, terminated=True,
                      metadata={"milestones": env.reached})
    again = Trajectory.model_validate_json(traj.model_dump_json())
    assert again == traj and again.success and again.reward == 1.0
    assert [s.result.milestones for s in again.steps if s.result.milestones] == [[m.id] for m in task.milestones]
