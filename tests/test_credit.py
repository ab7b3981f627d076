"""agentgym.credit: every test vector of docs/ALGORITHMS.md §1-§6, edge cases, config and compute()."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from agentgym import credit
from agentgym.errors import ConfigError
from agentgym.types import Milestone, Step, StepResult, Task, Trajectory

TOL = 2e-4


def close(actual, expected, tol=TOL):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), atol=tol, rtol=0)


# --------------------------------------------------------------------------------------------
# TV-G1, TV-G3, TV-G4, TV-G5 (GiGPO, §1.7)
# --------------------------------------------------------------------------------------------

# τ1 = s0 s1 s2 (0 0 10), τ2 = s0 s1 s3 s4 (all 0, truncated failure), τ3 = s0 s5 s2 (0 0 10)
G1 = dict(
    group_ids=["g"] * 10,
    traj_ids=[1, 1, 1, 2, 2, 2, 2, 3, 3, 3],
    anchors=["s0", "s1", "s2", "s0", "s1", "s3", "s4", "s0", "s5", "s2"],
    rewards=[0, 0, 10, 0, 0, 0, 0, 0, 0, 10],
)
G1_STEP = {  # A^S per row
    "mean": [3.0083, 4.75, 0, -6.0167, -4.75, 0, 0, 3.0083, 0, 0],
    "std": [0.5774, 0.7071, 0, -1.1547, -0.7071, 0, 0, 0.5774, 0, 0],
}
G1_FINAL = {  # A per row, by (norm, episode_stats)
    ("mean", "trajectory"): [6.3417, 8.0833, 3.3333, -12.6833, -11.4167, -6.6667, -6.6667, 6.3417, 3.3333, 3.3333],
    ("mean", "rows"): [7.0083, 8.75, 4.0, -12.0167, -10.75, -6.0, -6.0, 7.0083, 4.0, 4.0],
    ("std", "trajectory"): [1.1547, 1.2845, 0.5774, -2.3094, -1.8618, -1.1547, -1.1547, 1.1547, 0.5774, 0.5774],
    ("std", "rows"): [1.3519, 1.4817, 0.7746, -2.3166, -1.8690, -1.1619, -1.1619, 1.3519, 0.7746, 0.7746],
}
G1_EPISODE = {  # A^E of τ1, τ2, τ3
    ("mean", "trajectory"): [3.3333, -6.6667, 3.3333],
    ("mean", "rows"): [4.0, -6.0, 4.0],
    ("std", "trajectory"): [0.5774, -1.1547, 0.5774],
    ("std", "rows"): [0.7746, -1.1619, 0.7746],
}


def parts(**kw):
    """(A, A^E, A^S) from gigpo: A^E is the omega=0 result, A^S the difference."""
    a = credit.gigpo(**kw)
    a_e = credit.gigpo(**{**kw, "omega": 0.0})
    return a, a_e, a - a_e


@pytest.mark.parametrize("norm", ["mean", "std"])
@pytest.mark.parametrize("stats", ["trajectory", "rows"])
def test_tv_g1(norm, stats):
    close(credit.discounted_returns(G1["traj_ids"], G1["rewards"], 0.95),
          [9.025, 9.5, 10, 0, 0, 0, 0, 9.025, 9.5, 10])
    a, a_e, a_s = parts(**G1, gamma=0.95, omega=1.0, norm=norm, episode_stats=stats)
    close(a_e[[0, 3, 7]], G1_EPISODE[norm, stats])
    close(a_s, G1_STEP[norm])
    close(a, G1_FINAL[norm, stats])


def test_tv_g3_single_trajectory():
    kw = dict(group_ids=[0, 0, 0], traj_ids=[0, 0, 0], anchors=["s0", "s1", "s2"], rewards=[0, 0, 10])
    close(credit.gigpo(**kw, norm="mean"), [10, 10, 10])
    np.testing.assert_allclose(credit.gigpo(**kw, norm="std"), 10 / (1 + 1e-6), rtol=1e-12)
    for norm in ("mean", "std"):
        assert np.all(credit.gigpo(**kw, norm=norm, episode_stats="rows") == 0)
        a, a_e, a_s = parts(**kw, norm=norm)
        assert np.all(a_s == 0)


def test_tv_g4_invalid_penalty():
    valid = [True] * 10
    valid[4] = False  # τ2 t1
    kw = dict(**G1, valid=valid, invalid_penalty=0.1)
    a, a_e, a_s = parts(**kw, norm="mean")
    close([a_e[4], a_s[4], a[4]], [-6.7667, -4.8, -11.5667])
    close([a_s[1], a[1]], [4.8, 8.1333])
    others = [0, 2, 3, 5, 6, 7, 8, 9]
    close(a[others], np.asarray(G1_FINAL["mean", "trajectory"])[others])

    a, a_e, a_s = parts(**kw, norm="std")
    close([a_e[4], a_s[4], a[4]], [-1.1720, -0.7071, -1.8791])

    a, a_e, a_s = parts(**kw, norm="mean", episode_stats="rows")
    close(a_e[[0, 3, 5]], [4.01, -5.99, -5.99])
    close([a_e[4], a_s[4], a[4]], [-6.09, -4.8, -10.89])
    close(a[1], 8.81)


def test_tv_g5_similarity_grouping():
    c1 = "You arrive at cabinet 1. The cabinet 1 is closed."
    c2 = "You arrive at cabinet 2. The cabinet 2 is closed."
    d1 = "You arrive at drawer 1. The drawer 1 is open."
    # one step per trajectory, so A^S shows the anchor grouping directly
    kw = dict(group_ids=[0, 0, 0, 0], traj_ids=[0, 1, 2, 3], anchors=[c1, c2, d1, d1], rewards=[1, 0, 5, 3],
              norm="mean")
    _, _, a_s = parts(**kw, similarity=0.95)
    close(a_s, [0.5, -0.5, 1.0, -1.0])  # c1 and c2 merged (ratio 0.9592); drawer apart (0.7447)
    _, _, exact = parts(**kw)
    close(exact, [0, 0, 1.0, -1.0])
    _, _, strict = parts(**kw, similarity=0.96)
    close(strict, [0, 0, 1.0, -1.0])
    _, _, from_array = parts(**{**kw, "anchors": np.array(kw["anchors"])}, similarity=0.95)
    close(from_array, [0.5, -0.5, 1.0, -1.0])


def test_similarity_uses_the_first_member_as_representative():
    # "ab" opens a cluster; "abc" joins it (ratio 0.8); "abcd" vs the representative "ab" is 0.667,
    # so it opens its own cluster even though it is close to "abc".
    kw = dict(group_ids=[0] * 3, traj_ids=[0, 1, 2], anchors=["ab", "abc", "abcd"], rewards=[1, 3, 7], norm="mean")
    _, _, a_s = parts(**kw, similarity=0.75)
    close(a_s, [-1, 1, 0])


def test_similarity_needs_text_anchors_and_a_threshold_in_range():
    with pytest.raises(TypeError, match="text anchors"):
        credit.gigpo([0, 0], [0, 1], [1, 2], [0, 1], similarity=0.9)
    with pytest.raises(ValueError, match="between 0 and 1"):
        credit.gigpo([0, 0], [0, 1], ["a", "b"], [0, 1], similarity=1.0)


# --------------------------------------------------------------------------------------------
# GRPO, Dr. GRPO, RLOO (§2.4)
# --------------------------------------------------------------------------------------------

TABLE_2_4 = [  # R, GRPO, Dr. GRPO, RLOO
    ([1, 0, 0, 1], [0.8660, -0.8660, -0.8660, 0.8660], [0.5, -0.5, -0.5, 0.5], [0.6667, -0.6667, -0.6667, 0.6667]),
    ([10] + [0] * 7, [2.4749] + [-0.3536] * 7, [8.75] + [-1.25] * 7, [10.0] + [-1.4286] * 7),
    ([1, 0, 0], [1.1547, -0.5773, -0.5773], [0.6667, -0.3333, -0.3333], [1.0, -0.5, -0.5]),
    ([1, 1, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]),
    ([0.7], [0.7], [0.7], [0.7]),
]


@pytest.mark.parametrize("returns, a_grpo, a_dr, a_rloo", TABLE_2_4)
@pytest.mark.parametrize("stats", ["trajectory", "rows"])
def test_grpo_rloo_table(returns, a_grpo, a_dr, a_rloo, stats):
    n = len(returns)
    args = (["g"] * n, list(range(n)), returns)  # one step per trajectory: both statistics agree
    close(credit.grpo(*args, episode_stats=stats), a_grpo)
    close(credit.grpo(*args, norm="mean", episode_stats=stats), a_dr)
    close(credit.rloo(*args, episode_stats=stats), a_rloo)


def test_all_equal_returns_give_exactly_zero():
    # 0.1 × 3 does not sum to exactly 0.3: the tied group must still give exact zeros, no NaN
    args = ([0] * 6, [0, 0, 1, 1, 2, 2], [0.05, 0.05, 0.1, 0.0, 0.0, 0.1])
    for stats in ("trajectory", "rows"):
        assert np.all(credit.grpo(*args, episode_stats=stats) == 0)
        assert np.all(credit.grpo(*args, norm="mean", episode_stats=stats) == 0)
        assert np.all(credit.rloo(*args, episode_stats=stats) == 0)
        a_e = credit.gigpo(*args[:2], ["a", "b"] * 3, args[2], omega=0, episode_stats=stats)
        assert np.all(a_e == 0)
    # equal step returns in an anchor group: A^S exactly 0
    assert np.all(credit.gigpo([0] * 3, [0, 1, 2], ["s"] * 3, [0.1] * 3, episode_stats="rows") == 0)


@pytest.mark.parametrize("stats, grpo_, dr, rloo_", [
    ("trajectory", [0.7071, -0.7071], [0.5, -0.5], [1.0, -1.0]),
    ("rows", [0.5, -1.5], [0.25, -0.75], [0.3333, -1.0]),
])
def test_layout_l1_different_lengths(stats, grpo_, dr, rloo_):
    # τ1: 3 steps, R = 1 (reward on the last step); τ2: 1 step, R = 0
    args = ([0] * 4, ["a", "a", "a", "b"], [0, 0, 1, 0])
    expand = [0, 0, 0, 1]
    close(credit.grpo(*args, episode_stats=stats), np.asarray(grpo_)[expand])
    close(credit.grpo(*args, norm="mean", episode_stats=stats), np.asarray(dr)[expand])
    close(credit.rloo(*args, episode_stats=stats), np.asarray(rloo_)[expand])


def test_singleton_groups_follow_their_rules():
    args = ([0, 1, 1], [0, 1, 2], [0.7, 1, 0])  # group 0 is a singleton
    np.testing.assert_allclose(credit.grpo(*args)[0], 0.7 / (1 + 1e-6), rtol=1e-12)
    assert credit.grpo(*args, norm="mean")[0] == 0.7
    assert credit.rloo(*args)[0] == 0.7
    assert credit.gigpo(*args[:2], ["s", "s", "s"], args[2], norm="mean")[0] == 0.7  # zero / self baseline


# --------------------------------------------------------------------------------------------
# Dr. MAS (§3.7)
# --------------------------------------------------------------------------------------------

# τ1 (R = 1): S, V;  τ2 (R = 0): S, V, S, V with the second V invalid (p = 0.1)
M2 = dict(group_ids=[0] * 6, traj_ids=[1, 1, 2, 2, 2, 2], rewards=[0, 1, 0, 0, 0, 0])
M2_AGENTS = ["S", "V", "S", "V", "S", "V"]
M2_VALID = [True, True, True, True, True, False]


def test_tv_m2_agent_wise():
    kw = dict(**M2, agent_ids=M2_AGENTS, valid=M2_VALID, invalid_penalty=0.1)
    a = credit.grpo(**kw)
    close(a[[0, 2, 4]], [1.1547, -0.5773, -0.5773])  # S rows [1, 0, 0]
    close(a[[1, 3, 5]], [1.1508, -0.4932, -0.6576])  # V rows [1, 0, -0.1]
    a = credit.grpo(**kw, norm="mean")
    close(a[[0, 2, 4]], [0.6667, -0.3333, -0.3333])
    close(a[[1, 3, 5]], [0.7, -0.3, -0.4])
    # episode_stats does not apply: Dr. MAS always pools the rows of an agent
    close(credit.grpo(**kw, episode_stats="rows"), credit.grpo(**kw))


def test_tv_m2_vanilla_global_baseline():
    a = credit.grpo(**M2, valid=M2_VALID, invalid_penalty=0.1)  # trajectory means 1.0 and -0.025
    close(a, [0.7071, 0.7071, -0.7071, -0.7071, -0.7071, -0.7071])


def test_agents_that_act_once_or_never():
    # agent "solo" acts once in the group: zero baseline; agent "V" never acts in group 1
    kw = dict(group_ids=[0, 0, 0, 1, 1], traj_ids=[0, 0, 1, 2, 3], rewards=[0, 1, 0, 2, 0],
              agent_ids=["S", "solo", "S", "S", "S"])
    a = credit.grpo(**kw, norm="mean")
    assert a[1] == 1.0  # R of τ0, zero baseline
    close(a[[0, 2]], [0.5, -0.5])
    close(a[[3, 4]], [1.0, -1.0])
    close(credit.rloo(**kw)[[0, 1, 2]], [1.0, 1.0, -1.0])


def test_gigpo_per_agent_scopes_statistics_and_anchor_groups():
    # τ0: A, B, A with rewards 0, 0, 1 (γ = 1: returns 1, 1, 1); τ1: A, B with rewards 0, 0. All see "s".
    kw = dict(group_ids=[0] * 5, traj_ids=[0, 0, 0, 1, 1], anchors=["s"] * 5, rewards=[0, 0, 1, 0, 0],
              gamma=1.0, norm="mean")
    _, _, pooled = parts(**kw)
    close(pooled, [0.4, 0.4, 0.4, -0.6, -0.6])
    _, a_e, a_s = parts(**kw, agent_ids=["A", "B", "A", "A", "B"])
    close(a_s, [1 / 3, 0.5, 1 / 3, -2 / 3, -0.5])  # A: {1, 1, 0}; B: {1, 0}
    close(a_e, [1 / 3, 0.5, 1 / 3, -2 / 3, -0.5])  # episode rows pooled per agent as well


# --------------------------------------------------------------------------------------------
# GiGPO edge cases
# --------------------------------------------------------------------------------------------


def test_revisited_states_pool_across_time():
    # τ0 loops: a, b, a (reward 1 at the end); τ1: a (reward 0)
    kw = dict(group_ids=[0] * 4, traj_ids=[0, 0, 0, 1], anchors=["a", "b", "a", "a"], rewards=[0, 0, 1, 0],
              gamma=0.5, norm="mean")
    _, _, a_s = parts(**kw)
    # returns: τ0 = 0.25, 0.5, 1; τ1 = 0. group a = {0.25, 1, 0}, mean 0.41667
    close(a_s, [0.25 - 5 / 12, 0, 1 - 5 / 12, -5 / 12])


def test_anchor_groups_never_cross_task_groups():
    kw = dict(group_ids=[0, 0, 1, 1], traj_ids=[0, 1, 0, 1], anchors=["s"] * 4, rewards=[1, 0, 5, 5], norm="mean")
    _, _, a_s = parts(**kw)
    close(a_s, [0.5, -0.5, 0, 0])


def test_none_anchor_gets_no_step_advantage():
    kw = dict(group_ids=[0] * 3, traj_ids=[0, 1, 2], anchors=[None, None, "s"], rewards=[1, 0, 0], norm="mean")
    _, _, a_s = parts(**kw)
    assert np.all(a_s == 0)


def test_anchor_canonical_forms():
    n = 6
    base = dict(group_ids=[0] * n, traj_ids=list(range(n)), rewards=[1, 0, 1, 0, 1, 0], norm="mean")
    expected = parts(**base, anchors=["x", "x", "y", "y", "z", "z"])[2]
    forms = [
        [np.array([1, 2]), np.array([1, 2]), [3], (3,), {"k": 1, "j": [2]}, {"j": (2,), "k": np.int64(1)}],
        [np.int64(4), 4, np.float32(0.5), 0.5, ("a", [1]), ["a", (1,)]],
    ]
    for anchors in forms:
        close(parts(**base, anchors=anchors)[2], expected)
    close(parts(**base, anchors=np.array([[0, 1], [0, 1], [1, 0], [1, 0], [2, 2], [2, 2]]))[2], expected)
    close(parts(**base, anchors=np.array([7, 7, 8, 8, 9, 9]))[2], expected)
    with pytest.raises(TypeError, match="cannot be compared"):
        credit.gigpo(**base, anchors=[object()] * n)


def test_discounted_returns_interleaved_and_long():
    rng = np.random.default_rng(0)
    lengths = [1, 3, 700]  # long enough that a γ^-t cumulative-sum shortcut would lose precision
    traj = np.concatenate([[i] * n for i, n in enumerate(lengths)])
    rewards = rng.normal(size=len(traj))
    expected = np.zeros(len(traj))
    for i in range(len(lengths)):
        acc = 0.0
        for k in np.flatnonzero(traj == i)[::-1]:
            acc = rewards[k] + 0.99 * acc
            expected[k] = acc
    # interleave the trajectories round-robin; each keeps its time order
    queues = [list(np.flatnonzero(traj == i)) for i in range(len(lengths))]
    rows = []
    while any(queues):
        rows += [q.pop(0) for q in queues if q]
    got = credit.discounted_returns(traj[rows], rewards[rows], 0.99)
    np.testing.assert_allclose(got, expected[rows], rtol=1e-10, atol=1e-10)


def test_trajectory_ids_may_repeat_across_groups():
    a = credit.grpo(["g1", "g1", "g2", "g2"], [0, 1, 0, 1], [1, 0, 0, 1], norm="mean")
    close(a, [0.5, -0.5, -0.5, 0.5])


def test_penalty_is_not_blown_up_by_a_zero_variance_group():
    # every episode failed (std 0): the penalised row gets -p, not -p/ε
    a = credit.gigpo([0] * 4, [0, 0, 1, 1], ["a", "b", "a", "c"], [0] * 4, valid=[True, False, True, True],
                     invalid_penalty=0.1, omega=0.0)
    close(a, [0, -0.1, 0, 0], tol=1e-9)


def test_input_errors():
    with pytest.raises(ValueError, match="one per step row"):
        credit.grpo([0, 0], [0], [1, 2])
    with pytest.raises(ValueError, match="norm must be one of"):
        credit.grpo([0], [0], [1], norm="max")
    with pytest.raises(ValueError, match="finite"):
        credit.rloo([0], [0], [np.nan])
    with pytest.raises(ValueError, match="gamma"):
        credit.discounted_returns([0], [1], 1.5)
    assert credit.gigpo([], [], [], []).shape == (0,)


# --------------------------------------------------------------------------------------------
# Potential shaping, TV-R (§5.4)
# --------------------------------------------------------------------------------------------


def test_tv_r_potential_shaping():
    phi, r = [0, 0.25, 0.25, 0.75], [0, 0, 0, 1]
    shaped = credit.potential_shaping([0] * 4, r, phi, gamma=0.9)
    close(shaped - np.asarray(r), [0.225, -0.025, 0.425, -0.75])
    close(shaped, [0.225, -0.025, 0.425, 0.25])
    close(credit.discounted_returns([0] * 4, r, 0.9), [0.729, 0.81, 0.9, 1.0])
    close(credit.discounted_returns([0] * 4, shaped, 0.9), [0.729, 0.56, 0.65, 0.25])
    close(credit.potential_shaping([0] * 4, r, phi, gamma=1.0) - np.asarray(r), [0.25, 0, 0.5, -0.75])
    # Φ(s4) = 1: give the final state a row of its own (its shaped reward is not used)
    shaped = credit.potential_shaping([0] * 5, r + [0], phi + [1.0], gamma=0.9)[:4]
    close(shaped - np.asarray(r), [0.225, -0.025, 0.425, 0.15])
    close(shaped, [0.225, -0.025, 0.425, 1.15])
    # episode-level change −Φ(s0) − (1−γ)Σ_{t≥1} Φ(s_t) = −0.125
    close(credit.potential_shaping([0] * 4, r, phi, gamma=0.9).sum() - 1, -0.125)


def test_milestone_potential():
    # two trajectories, interleaved; τa reaches 1 milestone at step 0 and 2 at step 2 (K = 4)
    phi = credit.milestone_potential(["a", "b", "a", "b", "a"], [1, 0, 0, 1, 2], 4)
    close(phi, [0, 0, 0.25, 0, 0.25])
    with pytest.raises(ValueError, match="more milestones"):
        credit.milestone_potential([0, 0], [2, 1], 2)


# --------------------------------------------------------------------------------------------
# Horizon schedule, TV-I (§6.5)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rounds, k, cases", [
    ([10, 20, 30], 100, {1: 10, 100: 10, 101: 20, 200: 20, 201: 30, 1000: 30}),
    ([8, 12, 15], 80, {80: 8, 81: 12, 160: 12, 161: 15}),
])
def test_tv_i_horizon(rounds, k, cases):
    for step, h in cases.items():
        assert credit.horizon(step, rounds, k) == h


def test_horizon_fixed_and_errors():
    assert credit.horizon(5000, 12, 100) == 12
    with pytest.raises(ConfigError, match="increase"):
        credit.horizon(1, [20, 10], 100)
    with pytest.raises(ConfigError, match="steps_per_stage"):
        credit.horizon(1, [10], 0)
    with pytest.raises(ValueError, match="from 1"):
        credit.horizon(0, [10], 5)


# --------------------------------------------------------------------------------------------
# compute(): trajectories and config
# --------------------------------------------------------------------------------------------


def step(i, reward=0.0, key=None, *, kind="action", segment=0, agent="agent", valid=True, milestones=(), tokens=1):
    result = None
    if kind == "action":
        result = StepResult(observation="", reward=reward, valid=valid, milestones=list(milestones))
    return Step(index=i, kind=kind, segment=segment, agent=agent, state_key=key, result=result,
                response_ids=[0] * tokens)


def traj(tid, group, steps, **kw):
    return Trajectory(id=tid, group_id=group, task_id=kw.pop("task_id", "t"), env="e", steps=steps, **kw)


def test_tv_s2_supo_segments_and_overlong():
    # G = 4, rewards [1, 0, 1, 0]; τ4 overlong. τ1 has 3 segments, τ2 1, τ3 2. Token counts per
    # segment: τ1 [100, 80, 60], τ2 [50], τ3 [70, 40], τ4 [90]; each segment ends in a summary
    # except the last one.
    def segments(tokens, reward):
        steps = []
        for m, n in enumerate(tokens):
            steps.append(step(len(steps), 0.0, f"s{m}", segment=m, tokens=n // 2))
            if m < len(tokens) - 1:
                steps.append(step(len(steps), kind="summary", segment=m, tokens=n - n // 2))
            else:
                steps[-1] = step(len(steps) - 1, reward, f"s{m}", segment=m, tokens=n // 2)
                steps.append(step(len(steps), 0.0, "end", segment=m, tokens=n - n // 2))
        return steps

    batch = [
        traj("1", "g", segments([100, 80, 60], 1.0)),
        traj("2", "g", segments([50], 0.0)),
        traj("3", "g", segments([70, 40], 1.0)),
        traj("4", "g", segments([90], 0.0), overlong=True),
    ]
    res = credit.compute(batch, credit.CreditConfig())
    per_traj = {i: res.advantages[res.traj_index == i] for i in range(4)}
    close(per_traj[0], 0.8660)
    close(per_traj[1], -0.8660)
    close(per_traj[2], 0.8660)
    assert not res.loss_mask[res.traj_index == 3].any() and res.loss_mask[res.traj_index < 3].all()
    tokens = np.asarray([len(batch[i].steps[j].response_ids) for i, j in zip(res.traj_index, res.step_index)])
    weight = tokens * res.loss_mask
    assert weight.sum() == 400
    close((res.advantages * weight).sum() / weight.sum(), 0.6495)

    excluded = credit.compute(batch, credit.CreditConfig(summarization={"overlong_in_stats": False}))
    close([excluded.advantages[excluded.traj_index == i][0] for i in range(3)], [0.5773, -1.1547, 0.5773])
    assert np.all(excluded.advantages[excluded.traj_index == 3] == 0)


def test_compute_gigpo_matches_array_api_and_skips_summaries():
    steps1 = [step(0, 0, "s0"), step(1, 0, "s1"), step(2, kind="summary"), step(3, 10, "s2", segment=1)]
    steps2 = [step(0, 0, "s0"), step(1, 0, "s1"), step(2, 0, "s3"), step(3, 0, "s4")]
    steps3 = [step(0, 0, "s0"), step(1, 0, "s5"), step(2, 10, "s2")]
    cfg = credit.CreditConfig(estimator="gigpo", norm="mean")
    res = credit.compute([traj("1", "g", steps1), traj("2", "g", steps2), traj("3", "g", steps3)], cfg)
    assert res.step_index.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2]
    actions = [0, 1, 3, 4, 5, 6, 7, 8, 9, 10]
    # the summary neither discounts nor joins an anchor group: the action rows are exactly TV-G1
    close(res.advantages[actions], G1_FINAL["mean", "trajectory"])
    close(res.advantages[2], 3.3333)  # A^E of τ1
    assert res.loss_mask.all()


def test_compute_estimators_and_options_match_the_functions():
    t1 = traj("1", "g", [step(0, 0, "a", agent="S"), step(1, 1, "b", agent="V", valid=False)])
    t2 = traj("2", "g", [step(0, 0, "a", agent="S")])
    t3 = traj("3", "h", [step(0, 2, "a", agent="S")])
    args = ([0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 0, 2])
    kw = dict(valid=[True, False, True, True], invalid_penalty=0.1)
    cfg = credit.CreditConfig(estimator="rloo", episode_stats="rows", invalid_penalty=0.1)
    close(credit.compute([t1, t2, t3], cfg).advantages, credit.rloo(*args, episode_stats="rows", **kw))
    cfg = credit.CreditConfig(per_agent=True, norm="mean", invalid_penalty=0.1)
    expected = credit.grpo(*args, norm="mean", agent_ids=["S", "V", "S", "S"], **kw)
    close(credit.compute([t1, t2, t3], cfg).advantages, expected)


def test_compute_skips_errored_trajectories():
    batch = [traj("1", "g", [step(0, 1)]), traj("2", "g", [step(0, 0)]),
             traj("3", "g", [step(0, 5)], error="env crashed")]
    res = credit.compute(batch, credit.CreditConfig(norm="mean"))
    close(res.advantages, [0.5, -0.5, 0])
    assert res.loss_mask.tolist() == [True, True, False]
    res = credit.compute(batch, credit.CreditConfig(norm="mean", skip_errors=False))
    close(res.advantages, [1 - 2, 0 - 2, 5 - 2])


def test_compute_milestone_bonus():
    task = Task(id="t", env="e", milestones=[Milestone(id="m1", weight=2.0), Milestone(id="m2")])
    batch = [
        traj("1", "g", [step(0, 0, milestones=["m1"]), step(1, 0, milestones=["m1", "m2"])]),  # m1 counts once
        traj("2", "g", [step(0, 0)]),
    ]
    cfg = credit.CreditConfig(norm="mean", milestones="bonus", milestone_weight=0.5)
    res = credit.compute(batch, cfg, tasks=[task])
    close(res.advantages, [0.75, 0.75, -0.75])  # R = 0.5·2 + 0.5·1 = 1.5 vs 0
    res = credit.compute(batch, cfg)  # without tasks every milestone weighs 1
    close(res.advantages, [0.5, 0.5, -0.5])


def test_compute_milestone_potential():
    task = Task(id="t", env="e", milestones=[Milestone(id=f"m{k}") for k in range(4)])
    # TV-R: potentials 0, .25, .25, .75 before steps 0..3, rewards 0, 0, 0, 1
    steps_ = [step(0, 0, "s0", milestones=["m0"]), step(1, 0, "s1"), step(2, 0, "s2", milestones=["m1", "m2"]),
              step(3, 1, "s3", milestones=["m3"])]
    cfg = credit.CreditConfig(estimator="gigpo", gamma=0.9, milestones="potential", norm="mean")
    res = credit.compute([traj("1", "g", steps_)], cfg, tasks={"t": task})
    close(res.advantages, 1.0 - 0.125)  # N = 1: A^E = shaped return, A^S = 0
    with pytest.raises(ValueError, match="tasks"):
        credit.compute([traj("1", "g", steps_)], cfg)


def test_compute_empty_batch():
    res = credit.compute([], credit.CreditConfig())
    assert len(res) == 0 and res.advantages.dtype == np.float64


def test_config_fields_are_described_and_checked():
    for name, field in credit.CreditConfig.model_fields.items():
        assert field.description, name
    for name, field in credit.SummarizationConfig.model_fields.items():
        assert field.description, name
    bad = [
        (dict(estimator="grpo", omega=0.5), "omega is only used by estimator='gigpo'"),
        (dict(estimator="rloo", similarity=0.9), "similarity is only used"),
        (dict(estimator="grpo", gamma=0.9), "gamma is only used"),
        (dict(estimator="rloo", norm="mean"), "rloo has no normalization"),
        (dict(milestone_weight=2.0), "milestones='off'"),
        (dict(summarization={"overlong_mask": False, "overlong_in_stats": False}), "overlong_mask=True"),
        (dict(estimator="gigpo", similarity=1.0), "less than 1"),
        (dict(estimatr="gigpo"), "Extra inputs"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValidationError, match=message):
            credit.CreditConfig(**kwargs)
    credit.CreditConfig(estimator="grpo", gamma=1.0, milestones="potential")  # gamma shapes here


def test_module_does_not_import_torch():
    code = "import sys, agentgym.credit; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "gigpo"])
def test_config_full_dump_loads_back(estimator):
    cfg = credit.CreditConfig(estimator=estimator)
    assert credit.CreditConfig.model_validate(cfg.model_dump(mode="json")) == cfg
