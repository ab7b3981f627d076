"""Property tests for agentgym.credit (hypothesis): the invariants of docs/ALGORITHMS.md §9 and a
comparison with a plain loop implementation written straight from the formulas."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agentgym import credit

EPS = credit.EPS
STATES = ["a", "b", "c", "d"]


@st.composite
def batches(draw, min_trajs=1):
    """Groups of trajectories as flat rows, group blocks in a random order."""
    groups = []
    for g in range(draw(st.integers(1, 4))):
        rows = []
        for i in range(draw(st.integers(min_trajs, 4))):
            for _ in range(draw(st.integers(1, 5))):
                rows.append(dict(
                    group=f"g{g}", traj=f"g{g}t{i}", anchor=draw(st.sampled_from(STATES)),
                    reward=draw(st.sampled_from([0.0, 0.0, 1.0, 0.5, 10.0, -1.0])),
                    valid=draw(st.booleans()), agent=draw(st.sampled_from(["S", "V"])),
                ))
        groups.append(rows)
    return groups


def columns(groups):
    rows = [r for g in groups for r in g]
    return {k: [r[k] for r in rows] for k in rows[0]}


def gigpo_parts(c, **kw):
    a = credit.gigpo(c["group"], c["traj"], c["anchor"], c["reward"], **kw)
    a_e = credit.gigpo(c["group"], c["traj"], c["anchor"], c["reward"], **{**kw, "omega": 0.0})
    return a_e, a - a_e


@settings(max_examples=60, deadline=None)
@given(batches(min_trajs=2), st.sampled_from(["std", "mean"]))
def test_grpo_sums_to_zero_per_group(groups, norm):
    c = columns(groups)
    a = credit.grpo(c["group"], c["traj"], c["reward"], norm=norm)
    first = {}
    for k, t in enumerate(c["traj"]):
        first.setdefault(t, k)
    total = defaultdict(float)
    for t, k in first.items():
        total[c["group"][k]] += a[k]
    assert all(abs(v) < 1e-9 for v in total.values())


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from(["std", "mean"]), st.sampled_from(["trajectory", "rows"]), st.booleans())
def test_gigpo_step_advantages_sum_to_zero_per_anchor_group(groups, norm, stats, per_agent):
    c = columns(groups)
    _, a_s = gigpo_parts(c, norm=norm, episode_stats=stats, gamma=0.9, valid=c["valid"], invalid_penalty=0.1,
                         agent_ids=c["agent"] if per_agent else None)
    total, size = defaultdict(float), defaultdict(int)
    for k in range(len(a_s)):
        key = (c["group"][k], c["anchor"][k], c["agent"][k] if per_agent else None)
        total[key] += a_s[k]
        size[key] += 1
    for key in total:
        if size[key] > 1:
            assert abs(total[key]) < 1e-8
        else:  # singleton: self baseline
            assert total[key] == 0


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from(["std", "mean"]), st.floats(0.5, 1.0),
       st.fixed_dictionaries({s: st.floats(0, 1) for s in STATES}))
def test_state_only_potential_leaves_step_advantages_unchanged(groups, norm, gamma, phi_of_state):
    c = columns(groups)
    _, before = gigpo_parts(c, norm=norm, gamma=gamma)
    phi = [phi_of_state[s] for s in c["anchor"]]
    shaped = credit.potential_shaping(c["traj"], c["reward"], phi, gamma=gamma)
    _, after = gigpo_parts({**c, "reward": shaped}, norm=norm, gamma=gamma)
    np.testing.assert_allclose(after, before, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(batches(), st.randoms(use_true_random=False))
def test_permuting_groups_permutes_the_output(groups, rnd):
    c = columns(groups)
    order = list(range(len(groups)))
    rnd.shuffle(order)
    offsets = np.cumsum([0] + [len(g) for g in groups])
    perm = np.concatenate([np.arange(offsets[g], offsets[g + 1]) for g in order])
    p = columns([groups[g] for g in order])
    pen = dict(valid=c["valid"], invalid_penalty=0.1)
    pen_p = dict(valid=p["valid"], invalid_penalty=0.1)
    for fn, args, args_p in [
        (credit.grpo, (c["group"], c["traj"], c["reward"]), (p["group"], p["traj"], p["reward"])),
        (credit.rloo, (c["group"], c["traj"], c["reward"]), (p["group"], p["traj"], p["reward"])),
        (credit.gigpo, (c["group"], c["traj"], c["anchor"], c["reward"]),
         (p["group"], p["traj"], p["anchor"], p["reward"])),
    ]:
        for extra in ({}, {"agent_ids": None}, {"episode_stats": "rows"}):
            a = fn(*args, **pen, **extra)
            a_p = fn(*args_p, **pen_p, **extra)
            np.testing.assert_allclose(a_p, a[perm], rtol=1e-12, atol=1e-12)
    a = credit.gigpo(*args[:2], [f"state {s}" for s in c["anchor"]], c["reward"], similarity=0.9)
    a_p = credit.gigpo(*args_p[:2], [f"state {s}" for s in p["anchor"]], p["reward"], similarity=0.9)
    np.testing.assert_allclose(a_p, a[perm], rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# A plain loop implementation of the module's formulas, to compare with the vectorized one
# --------------------------------------------------------------------------------------------


def _stats(values):
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return n, mean, std


def _norm(x, values, norm, singleton="zero"):
    n, mean, std = _stats(values)
    if n == 1:
        if singleton == "self":
            return 0.0
        mean, std = 0.0, 1.0
    return (x - mean) / (std + EPS) if norm == "std" else x - mean


def naive(c, estimator, norm, stats, per_agent, p, gamma=0.9, omega=1.0):
    n = len(c["reward"])
    traj_rows = defaultdict(list)
    for k in range(n):
        traj_rows[c["traj"][k]].append(k)
    ret = {t: sum(c["reward"][k] for k in rows) for t, rows in traj_rows.items()}
    pen = [0.0 if c["valid"][k] else p for k in range(n)]
    score = [ret[c["traj"][k]] - pen[k] for k in range(n)]
    scope = [(c["group"][k], c["agent"][k] if per_agent else None) for k in range(n)]
    pooled = defaultdict(list)
    for k in range(n):
        pooled[scope[k]].append(score[k])
    group_trajs = defaultdict(list)
    for t, rows in traj_rows.items():
        group_trajs[c["group"][rows[0]]].append(t)
    out = np.zeros(n)
    for k in range(n):
        g, t = c["group"][k], c["traj"][k]
        if estimator == "grpo":
            if per_agent or stats == "rows":
                out[k] = _norm(score[k], pooled[scope[k]], norm)
            else:
                value = {u: ret[u] - sum(pen[j] for j in traj_rows[u]) / len(traj_rows[u]) for u in group_trajs[g]}
                out[k] = _norm(value[t], list(value.values()), norm)
        elif estimator == "rloo":
            if per_agent or stats == "rows":
                vals, x, shift = pooled[scope[k]], score[k], 0.0
            else:
                vals, x, shift = [ret[u] for u in group_trajs[g]], ret[t], pen[k]
            m = len(vals)
            out[k] = (x - (sum(vals) - x) / (m - 1) if m > 1 else x) - shift
    if estimator != "gigpo":
        return out
    # GiGPO
    step_ret = np.zeros(n)
    for t, rows in traj_rows.items():
        acc = 0.0
        for k in reversed(rows):
            acc = c["reward"][k] + gamma * acc
            step_ret[k] = acc
    step_ret -= np.asarray(pen)
    anchor_groups = defaultdict(list)
    for k in range(n):
        anchor_groups[scope[k], c["anchor"][k]].append(step_ret[k])
    for k in range(n):
        g, t = c["group"][k], c["traj"][k]
        if per_agent or stats == "rows":
            a_e = _norm(score[k], pooled[scope[k]], norm)
        else:
            rets = [ret[u] for u in group_trajs[g]]
            m, _, std = _stats(rets)
            scale = (1.0 + EPS if m == 1 else std + EPS) if norm == "std" else 1.0
            a_e = _norm(ret[t], rets, norm) - pen[k] / max(scale, 1.0)
        a_s = _norm(step_ret[k], anchor_groups[scope[k], c["anchor"][k]], norm, singleton="self")
        out[k] = a_e + omega * a_s
    return out


@settings(max_examples=80, deadline=None)
@given(batches(), st.sampled_from(["grpo", "rloo", "gigpo"]), st.sampled_from(["std", "mean"]),
       st.sampled_from(["trajectory", "rows"]), st.booleans(), st.sampled_from([0.0, 0.1]))
def test_matches_a_plain_loop_implementation(groups, estimator, norm, stats, per_agent, p):
    c = columns(groups)
    kw = dict(episode_stats=stats, agent_ids=c["agent"] if per_agent else None, valid=c["valid"], invalid_penalty=p)
    if estimator == "grpo":
        got = credit.grpo(c["group"], c["traj"], c["reward"], norm=norm, **kw)
    elif estimator == "rloo":
        got = credit.rloo(c["group"], c["traj"], c["reward"], **kw)
    else:
        got = credit.gigpo(c["group"], c["traj"], c["anchor"], c["reward"], norm=norm, gamma=0.9, **kw)
    np.testing.assert_allclose(got, naive(c, estimator, norm, stats, per_agent, p), rtol=1e-9, atol=1e-7)
