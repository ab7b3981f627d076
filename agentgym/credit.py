"""Credit assignment: one advantage per step row, from group-relative statistics.

Every estimator works on flat per-step *rows* (layout L1 of docs/ALGORITHMS.md §0.1): row k is one agent
turn, with the id of its task group (the N samples of one task), the id of its trajectory, its
environment reward r_t and, for GiGPO, its anchor state s_t. Groups may come in any order, even
interleaved; the rows of one trajectory must be in time order. Each function returns a float64
array with one advantage per row, in input order; the trainer broadcasts it to the row's tokens.

    function        baseline                                         paper
    grpo            group mean, ÷ group std (norm="mean": Dr. GRPO)  Shao et al. 2024; Liu et al. 2025
    rloo            mean of the other samples of the group           Ahmadian et al. 2024
    gigpo           episode level + anchor-state level               Feng et al. 2025
    agent_ids=...   statistics per (group, agent)                    Dr. MAS, arXiv 2602.08847
    compute         Trajectory objects + CreditConfig -> advantages and loss masks (the trainer's entry)

Also here: discounted_returns, potential_shaping and milestone_potential (MiRA-style shaping),
and horizon (the ScalingInter-RL turn budget).

Conventions shared by every estimator (docs/ALGORITHMS.md §0.2):

- std is the Bessel-corrected sample std; ε = 1e-6. A group whose values are all equal gets
  advantages of exactly 0.
- The episode return of trajectory i is R_i = Σ_t r_t (no bootstrap: a truncated or failed episode
  keeps the rewards it observed).
- ``episode_stats="trajectory"`` takes statistics over one value per trajectory (paper form);
  ``"rows"`` over every step row, so a long trajectory weighs more (verl-agent default).
  With ``agent_ids`` the statistics always pool every row of one agent in one group (Dr. MAS
  Eq. 5), so ``episode_stats`` does not apply.
- Singletons: GRPO, Dr. GRPO, Dr. MAS and the GiGPO episode level use the zero baseline (a lone
  sample's advantage is its score, ÷ (1 + ε) under std); RLOO keeps the score; the GiGPO step level
  uses the self baseline (0).
- The invalid-action penalty p lowers the score of each row with v_t = 0 by p (§0.3). How the
  penalised score enters under ``episode_stats="trajectory"`` differs per estimator, as in the
  reference code: GRPO scores a trajectory by the mean of its row scores and gives every row that
  value; RLOO and GiGPO take statistics over the episode returns R_i and subtract the penalty
  from the penalised row only.

Pure numpy. No Python loop runs over rows except the one dictionary pass that turns hashable
labels (str anchors, str ids) into integer ids, and the similarity clustering of §1.3.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentgym.errors import ConfigError
from agentgym.types import Task, Trajectory

__all__ = [
    "EPS",
    "CreditConfig",
    "CreditResult",
    "SummarizationConfig",
    "compute",
    "discounted_returns",
    "gigpo",
    "grpo",
    "horizon",
    "milestone_potential",
    "potential_shaping",
    "rloo",
]

EPS = 1e-6
"""ε added to the group std before dividing (docs/ALGORITHMS.md §0.2)."""

Norm = Literal["std", "mean"]
EpisodeStats = Literal["trajectory", "rows"]


# --------------------------------------------------------------------------------------------
# Labels to integer ids
# --------------------------------------------------------------------------------------------


def _dense_ids(labels: Any) -> tuple[np.ndarray, int]:
    """Ids 0..k-1 for hashable labels (equal labels, equal ids) and the number k of distinct labels."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iub":
        ids, distinct = _dense_int_ids(labels.reshape(-1).astype(np.int64, copy=False))
        return ids, len(distinct)
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "fUS":
        distinct, ids = np.unique(labels.reshape(-1), return_inverse=True)
        return ids.reshape(-1).astype(np.int64, copy=False), len(distinct)
    labels = list(labels)
    table = dict.fromkeys(labels)  # hashes at C speed, keeps first-seen order
    table = dict(zip(table, range(len(table))))
    ids = np.fromiter(map(table.__getitem__, labels), dtype=np.int64, count=len(labels))
    return ids, len(table)


def _dense_int_ids(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids 0..k-1 for integer labels, in increasing label order, and the k distinct labels."""
    if x.size == 0:
        return x.astype(np.int64), x.astype(np.int64)
    low = x.min()
    span = int(x.max() - low) + 1
    if span > 4 * x.size + 1024:
        distinct, ids = np.unique(x, return_inverse=True)
        return ids.reshape(-1), distinct
    # A presence table ranks the labels in linear time; np.unique sorts, which costs ~25x more
    # and would be most of GiGPO's run time on a million rows.
    present = np.zeros(span, dtype=bool)
    present[x - low] = True
    rank = np.cumsum(present) - 1
    return rank[x - low], np.flatnonzero(present) + low


_PLAIN_ANCHORS = frozenset({str, int, float, bool, type(None)})


def _canonical(anchor: Any) -> Any:
    """The hashable canonical form of an anchor state key (docs/ALGORITHMS.md §1.3)."""
    if anchor is None or isinstance(anchor, (str, int, float, bool)):
        return anchor
    if isinstance(anchor, np.generic):
        return anchor.item()
    if isinstance(anchor, np.ndarray):
        return tuple(_canonical(v) for v in anchor.ravel())
    if isinstance(anchor, (list, tuple)):
        return tuple(_canonical(v) for v in anchor)
    if isinstance(anchor, dict):
        return tuple(sorted((_canonical(k), _canonical(v)) for k, v in anchor.items()))
    raise TypeError(
        f"an anchor of type {type(anchor).__name__} cannot be compared; use str, int, float, bool, "
        "a numpy scalar or array, or a list, tuple or dict of those"
    )


def _anchor_ids(anchors: Any) -> tuple[np.ndarray, list[Any]]:
    """Integer id of each row's canonical anchor (-1 for None: no anchor) and the distinct anchors."""
    if isinstance(anchors, np.ndarray) and anchors.dtype != object:
        if anchors.ndim == 1 and anchors.dtype.kind in "iub":
            ids, distinct = _dense_int_ids(anchors.astype(np.int64, copy=False))
        elif anchors.ndim == 1:
            distinct, ids = np.unique(anchors, return_inverse=True)
        else:  # one array per row, compared on its flattened content
            flat = anchors.reshape(anchors.shape[0], int(np.prod(anchors.shape[1:])))
            distinct, ids = np.unique(flat, axis=0, return_inverse=True)
        # tolist() gives Python scalars (and lists for rows): the canonical forms of §1.3
        canonical = [tuple(d) if isinstance(d, list) else d for d in distinct.tolist()]
        return ids.reshape(-1).astype(np.int64, copy=False), canonical
    anchors = list(anchors)
    if not set(map(type, anchors)) <= _PLAIN_ANCHORS:
        anchors = [_canonical(a) for a in anchors]
    table = dict.fromkeys(anchors)  # hashes at C speed, keeps first-seen order
    distinct = list(table)
    table = dict(zip(distinct, range(len(distinct))))
    table[None] = -1  # no anchor
    ids = np.fromiter(map(table.__getitem__, anchors), dtype=np.int64, count=len(anchors))
    return ids, distinct


def _similarity_clusters(scope: np.ndarray, anchor: np.ndarray, texts: list[Any], theta: float) -> np.ndarray:
    """Cluster id of each row's text anchor under GiGPO's optional similarity grouping (§1.3).

    Inside each scope, in row order, a text joins the first cluster (in creation order) whose
    representative, its first member, has ``difflib.SequenceMatcher(None, text, rep).ratio() ≥ θ``;
    otherwise it opens a cluster. Identical texts always land in the same cluster, so only the
    distinct (scope, text) pairs are visited. Ids are unique across scopes. Rows without anchor: -1.
    """
    rows = np.flatnonzero(anchor >= 0)
    pair = scope[rows] * len(texts) + anchor[rows]
    _, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
    cluster_of_pair = np.empty(len(first), dtype=np.int64)
    clusters: dict[int, list[tuple[str, int]]] = {}
    n_clusters = 0
    for p in np.argsort(first, kind="stable"):  # distinct pairs in order of first appearance
        row = rows[first[p]]
        text = texts[anchor[row]]
        if not isinstance(text, str):
            raise TypeError(f"similarity grouping compares text anchors; got {type(text).__name__} {text!r}")
        existing = clusters.setdefault(int(scope[row]), [])
        for representative, cluster in existing:
            match = difflib.SequenceMatcher(None, text, representative)
            # the quick ratios are upper bounds of ratio(): a cheap way to skip clear misses
            if match.real_quick_ratio() >= theta and match.quick_ratio() >= theta and match.ratio() >= theta:
                cluster_of_pair[p] = cluster
                break
        else:
            cluster_of_pair[p] = n_clusters
            existing.append((text, n_clusters))
            n_clusters += 1
    out = np.full(len(anchor), -1, dtype=np.int64)
    out[rows] = cluster_of_pair[inverse.reshape(-1)]
    return out


# --------------------------------------------------------------------------------------------
# Rows, trajectories and group statistics
# --------------------------------------------------------------------------------------------


@dataclass
class _Batch:
    """The step rows of a call, with every label turned into a dense integer id."""

    group: np.ndarray  # task group g of each row
    n_groups: int
    traj: np.ndarray  # trajectory i of each row (a trajectory id is scoped to its group)
    n_traj: int
    reward: np.ndarray  # r_t
    penalty: np.ndarray  # p·(1 − v_t)
    scope: np.ndarray  # where statistics pool rows: the group, or (group, agent) under Dr. MAS
    n_scopes: int
    per_agent: bool

    @property
    def episode_return(self) -> np.ndarray:
        """R_i = Σ_t r_t, one value per trajectory."""
        return np.bincount(self.traj, weights=self.reward, minlength=self.n_traj)

    @property
    def traj_group(self) -> np.ndarray:
        """The task group of each trajectory."""
        out = np.zeros(self.n_traj, dtype=np.int64)
        out[self.traj] = self.group
        return out


def _batch(group_ids: Any, traj_ids: Any, rewards: Any, valid: Any = None, invalid_penalty: float = 0.0,
           agent_ids: Any = None) -> _Batch:
    reward = np.asarray(rewards, dtype=np.float64).reshape(-1)
    n = len(reward)
    group, n_groups = _dense_ids(group_ids)
    traj, n_traj = _dense_ids(traj_ids)
    _check_length("group_ids", group, n)
    _check_length("traj_ids", traj, n)
    if not np.all(np.isfinite(reward)):
        raise ValueError(f"rewards must be finite; row {int(np.flatnonzero(~np.isfinite(reward))[0])} is not")
    # The same trajectory label may be reused in different groups (e.g. 0..N-1 in each): then the
    # trajectory is the (group, label) pair.
    owner = np.zeros(n_traj, dtype=np.int64)
    owner[traj] = group
    if np.any(owner[traj] != group):
        traj, distinct = _dense_int_ids(group * n_traj + traj)
        n_traj = len(distinct)

    if not (np.isfinite(invalid_penalty) and invalid_penalty >= 0):
        raise ValueError(f"invalid_penalty must be a finite number >= 0, got {invalid_penalty}")
    penalty = np.zeros(n)
    if valid is not None and invalid_penalty:
        is_valid = np.asarray(valid, dtype=bool).reshape(-1)
        _check_length("valid", is_valid, n)
        penalty[~is_valid] = invalid_penalty

    scope, n_scopes = group, n_groups
    if agent_ids is not None:
        agent, n_agents = _dense_ids(agent_ids)
        _check_length("agent_ids", agent, n)
        scope, distinct = _dense_int_ids(group * n_agents + agent)
        n_scopes = len(distinct)
    return _Batch(group, n_groups, traj, n_traj, reward, penalty, scope, n_scopes, agent_ids is not None)


class _Stats(NamedTuple):
    n: np.ndarray  # members per key
    mean: np.ndarray
    std: np.ndarray  # Bessel-corrected; 0 for a single member


def _group_stats(x: np.ndarray, key: np.ndarray, n_keys: int) -> _Stats:
    """Count, mean and sample std of x within each key (docs/ALGORITHMS.md §0.2)."""
    n = np.bincount(key, minlength=n_keys)
    mean = np.bincount(key, weights=x, minlength=n_keys) / np.maximum(n, 1)
    # A group of equal values gets that exact value as its mean (a rounded sum/n could differ in
    # the last bit), so its advantages come out exactly 0.
    member = np.zeros(n_keys)
    member[key] = x
    tied = np.bincount(key, weights=x != member[key], minlength=n_keys) == 0
    mean = np.where(tied, member, mean)
    deviation = x - mean[key]
    std = np.sqrt(np.bincount(key, weights=deviation * deviation, minlength=n_keys) / np.maximum(n - 1, 1))
    return _Stats(n, mean, std)


def _baseline(stats: _Stats, norm: str, singleton: Literal["zero", "self"]) -> tuple[np.ndarray, np.ndarray]:
    """Per key, the baseline b and the divisor F_norm, so that A = (x − b) / F_norm.

    F_norm = std + ε under ``norm="std"`` and 1 under ``"mean"``. A key with one member follows the
    singleton rule: zero baseline (b = 0, std := 1) or self baseline (b = x, so A = 0; the mean of a
    single member is that member exactly, see :func:`_group_stats`).
    """
    lone = stats.n == 1
    base = stats.mean if singleton == "self" else np.where(lone, 0.0, stats.mean)
    if norm == "mean":
        return base, np.ones_like(base)
    return base, np.where(lone, 1.0, stats.std) + EPS


def _relative(x: np.ndarray, key: np.ndarray, n_keys: int, norm: str,
              singleton: Literal["zero", "self"] = "zero") -> np.ndarray:
    """Norm(x; X_key) = (x − mean) / F_norm for every row, statistics over the rows of its key."""
    base, scale = _baseline(_group_stats(x, key, n_keys), norm, singleton)
    return (x - base[key]) / scale[key]


def _time_layout(traj: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """A stable order that makes each trajectory's rows contiguous (None if they already are), and
    for each row in that order the number of later rows of its trajectory."""
    if len(traj) == 0:
        return None, np.zeros(0, dtype=np.int64)
    order = None
    change = traj[1:] != traj[:-1]
    run_label = traj[np.append(True, change)]
    if np.bincount(run_label).max() > 1:  # some trajectory is split into several runs
        order = np.argsort(traj, kind="stable")
        traj = traj[order]
        change = traj[1:] != traj[:-1]
    last = np.flatnonzero(np.append(change, True))  # last row of each trajectory
    run = np.concatenate(([0], np.cumsum(change)))
    return order, last[run] - np.arange(len(traj))


def _ordered(x: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    return x.copy() if order is None else x[order]


def _unordered(y: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    if order is None:
        return y
    out = np.empty_like(y)
    out[order] = y
    return out


# --------------------------------------------------------------------------------------------
# Returns
# --------------------------------------------------------------------------------------------


def discounted_returns(traj_ids: Any, rewards: Any, gamma: float) -> np.ndarray:
    """Discounted return of every step, computed backwards within each trajectory.

    GiGPO (Feng et al. 2025, arXiv 2505.10978) Eq. 5:

        R_t^{(i)} = Σ_{k=t}^{T_i−1} γ^{k−t} r_k^{(i)}

    Nothing is bootstrapped: a truncated or failed trajectory only sums the rewards it observed.

    Args:
        traj_ids: trajectory id of each row (hashable); the rows of a trajectory in time order.
        rewards: r_t of each row.
        gamma: discount γ in [0, 1].

    Returns:
        float64 array, R_t per row in input order.
    """
    _check_gamma(gamma)
    reward = np.asarray(rewards, dtype=np.float64).reshape(-1)
    traj, n_traj = _dense_ids(traj_ids)
    _check_length("traj_ids", traj, len(reward))
    return _discounted(traj, reward, gamma)


def _discounted(traj: np.ndarray, reward: np.ndarray, gamma: float) -> np.ndarray:
    # A doubling scan replaces the backward loop over t: after the pass with span d, y_t sums the
    # 2d rewards from t on (cut at the trajectory's end), so log2(T_max) vectorized passes suffice.
    # Every term is a product of powers of γ ≤ 1, so nothing is lost to cancellation (unlike a
    # cumulative sum of γ^{-t}·r_t, which breaks down on long trajectories).
    order, remaining = _time_layout(traj)
    y = _ordered(reward, order)
    span, factor = 1, float(gamma)
    longest = int(remaining.max()) if len(y) else 0
    while span <= longest:
        reach = remaining[:-span] >= span
        y[:-span][reach] += factor * y[span:][reach]
        span, factor = 2 * span, factor * factor
    return _unordered(y, order)


# --------------------------------------------------------------------------------------------
# Episode-level estimators: GRPO, Dr. GRPO, RLOO (and Dr. MAS per-agent statistics)
# --------------------------------------------------------------------------------------------


def grpo(group_ids: Any, traj_ids: Any, rewards: Any, *, norm: Norm = "std",
         episode_stats: EpisodeStats = "trajectory", agent_ids: Any = None, valid: Any = None,
         invalid_penalty: float = 0.0) -> np.ndarray:
    """Group-relative episode advantage, broadcast to every step of the trajectory.

    GRPO (Shao et al. 2024, arXiv 2402.03300); Dr. GRPO (Liu et al. 2025, arXiv 2503.20783) drops
    the division by the std:

        A_i = (R_i − mean_{j∈g} R_j) / (std_{j∈g} R_j + ε)      norm="std"
        A_i =  R_i − mean_{j∈g} R_j                             norm="mean"

    Singleton group: zero baseline, A_i = R_i / (1 + ε) (std) or R_i (mean).

    With the invalid-action penalty p, row scores are R_i − p·(1 − v_t); under
    ``episode_stats="trajectory"`` a trajectory's value is the mean of its row scores and all its
    rows share the normalized value (the Dr. MAS reference, docs/ALGORITHMS.md §3.3). Under ``"rows"``
    every row is a sample with its own score.

    Dr. MAS (arXiv 2602.08847, Eq. 5), switched on by ``agent_ids``: the statistics of agent k are
    μ_{g,k} and σ_{g,k} over the scores of every invocation of k in group g, and each row of k gets
    (score − μ_{g,k}) / (σ_{g,k} + ε). An agent that acts many times counts every time; one that
    never acts has no rows.

    Args:
        group_ids: task group of each row; traj_ids: trajectory of each row (ids may be reused
            across groups); rewards: per-step environment rewards r_t, R_i being their sum.
        norm: "std" (GRPO) or "mean" (Dr. GRPO).
        episode_stats: "trajectory" (one value per trajectory) or "rows" (every row).
        agent_ids: agent of each row, for Dr. MAS per-agent statistics.
        valid, invalid_penalty: validity v_t of each row and the penalty p (§0.3).

    Returns:
        float64 array, one advantage per row in input order.
    """
    _check_choice("norm", norm, ("std", "mean"))
    _check_choice("episode_stats", episode_stats, ("trajectory", "rows"))
    b = _batch(group_ids, traj_ids, rewards, valid, invalid_penalty, agent_ids)
    returns = b.episode_return
    if b.per_agent or episode_stats == "rows":
        score = returns[b.traj] - b.penalty
        return _relative(score, b.scope, b.n_scopes, norm)
    steps = np.bincount(b.traj, minlength=b.n_traj)
    value = returns - np.bincount(b.traj, weights=b.penalty, minlength=b.n_traj) / np.maximum(steps, 1)
    return _relative(value, b.traj_group, b.n_groups, norm)[b.traj]


def rloo(group_ids: Any, traj_ids: Any, rewards: Any, *, episode_stats: EpisodeStats = "trajectory",
         agent_ids: Any = None, valid: Any = None, invalid_penalty: float = 0.0) -> np.ndarray:
    """REINFORCE leave-one-out advantage, broadcast to every step of the trajectory.

    RLOO (Ahmadian et al. 2024, arXiv 2402.14740; Kool et al. 2019), for n > 1 samples in the group:

        A_i = R_i − 1/(n−1) · Σ_{j≠i} R_j  =  n/(n−1) · (R_i − mean_{j∈g} R_j)

    Singleton: A_i = R_i. Under ``episode_stats="rows"`` (or with ``agent_ids``, Dr. MAS) every row
    is a sample, so n is the number of rows of the group (of the agent in the group).

    Under ``"trajectory"`` the baseline is taken over the episode returns R_j and the invalid-action
    penalty p·(1 − v_t) is subtracted from the penalised row alone: the baseline stays the mean of
    the other trajectories' returns.

    Args and returns as for :func:`grpo` (RLOO has no normalization).
    """
    _check_choice("episode_stats", episode_stats, ("trajectory", "rows"))
    b = _batch(group_ids, traj_ids, rewards, valid, invalid_penalty, agent_ids)
    returns = b.episode_return
    if b.per_agent or episode_stats == "rows":
        score = returns[b.traj] - b.penalty
        return _leave_one_out(score, b.scope, b.n_scopes)
    return _leave_one_out(returns, b.traj_group, b.n_groups)[b.traj] - b.penalty


def _leave_one_out(x: np.ndarray, key: np.ndarray, n_keys: int) -> np.ndarray:
    stats = _group_stats(x, key, n_keys)
    n = stats.n[key]
    base = np.where(n > 1, stats.mean[key], 0.0)
    return n / np.maximum(n - 1, 1) * (x - base)


# --------------------------------------------------------------------------------------------
# GiGPO
# --------------------------------------------------------------------------------------------


def gigpo(group_ids: Any, traj_ids: Any, anchors: Any, rewards: Any, *, gamma: float = 0.95,
          omega: float = 1.0, norm: Norm = "std", episode_stats: EpisodeStats = "trajectory",
          agent_ids: Any = None, valid: Any = None, invalid_penalty: float = 0.0,
          similarity: float | None = None) -> np.ndarray:
    """Group-in-Group Policy Optimization advantage of every step.

    GiGPO (Feng et al. 2025, arXiv 2505.10978), with F_norm = std + ε (``norm="std"``) or 1 (``"mean"``):

        A^E(τ_i) = (R(τ_i) − mean_{j∈g} R(τ_j)) / F_norm               Eq. 3, episode level
        R_t^{(i)} = Σ_{k≥t} γ^{k−t} r_k^{(i)}                            Eq. 5
        G^S(s̃) = {(j, u) : s_u^{(j)} = s̃}, within the task group         Eq. 6, anchor-state groups
        A^S(i, t) = (R_t^{(i)} − mean_{G^S(s_t)} R) / F_norm(G^S(s_t))   Eq. 7, step level
        A(i, t) = A^E(τ_i) + ω · A^S(i, t)                               Eq. 8

    The time index is not part of the anchor: revisited states pool with every other visit of the
    group. Singletons: A^E uses the zero baseline (A^E = R / (1 + ε) under std), A^S the self
    baseline (A^S = 0). A row whose anchor is None has no anchor-state group (A^S = 0).

    Anchors are compared on their canonical form (§1.3): str, int, float and bool as they are,
    numpy scalars by value, numpy arrays as flattened tuples, lists and tuples recursively, dicts
    as sorted (key, value) pairs. With ``similarity=θ`` text anchors are clustered instead: in row
    order, a text joins the first cluster whose first member it matches with
    ``difflib.SequenceMatcher.ratio() ≥ θ`` (order-dependent, as in the reference).

    Invalid-action penalty (§0.3): the row's step return becomes R_t − p, after discounting and not
    propagated to earlier steps, and its episode score R_i − p. Under
    ``episode_stats="trajectory"`` the statistics are over the returns R_j and the penalty enters
    as −p / max(F_norm, 1): dividing p by a tiny group std (say, a group where every episode
    failed) would turn a small penalty into an advantage of −p/ε.

    With ``agent_ids`` (Dr. MAS) the episode statistics pool the rows of each (group, agent) and the
    anchor-state groups form inside each (group, agent). Each row counts as one environment step
    for discounting.

    Args:
        group_ids, traj_ids, rewards, agent_ids, valid, invalid_penalty, norm, episode_stats:
            as for :func:`grpo`.
        anchors: the anchor state key s_t of each row (hashable, or a numpy array per row).
        gamma: discount γ; omega: step-advantage weight ω.
        similarity: optional threshold θ in (0, 1) for similarity grouping of text anchors.

    Returns:
        float64 array, A(i, t) per row in input order.
    """
    _check_choice("norm", norm, ("std", "mean"))
    _check_choice("episode_stats", episode_stats, ("trajectory", "rows"))
    _check_gamma(gamma)
    if similarity is not None and not 0 < similarity < 1:
        raise ValueError(f"similarity must lie strictly between 0 and 1, got {similarity}")
    b = _batch(group_ids, traj_ids, rewards, valid, invalid_penalty, agent_ids)
    anchor, distinct = _anchor_ids(anchors)
    _check_length("anchors", anchor, len(b.reward))
    return _gigpo(b, anchor, distinct, gamma=gamma, omega=omega, norm=norm, episode_stats=episode_stats,
                  similarity=similarity)


def _gigpo(b: _Batch, anchor: np.ndarray, distinct: list[Any], *, gamma: float, omega: float, norm: str,
           episode_stats: str, similarity: float | None, env_step: np.ndarray | None = None) -> np.ndarray:
    """GiGPO on prepared rows. ``env_step`` marks the rows that are environment steps; the others
    (summaries) take no part in discounting and get no step advantage."""
    # Episode level, Eq. 3
    returns = b.episode_return
    if b.per_agent or episode_stats == "rows":
        a_episode = _relative(returns[b.traj] - b.penalty, b.scope, b.n_scopes, norm)
    else:
        tg = b.traj_group
        base, scale = _baseline(_group_stats(returns, tg, b.n_groups), norm, "zero")
        per_traj = (returns - base[tg]) / scale[tg]
        a_episode = per_traj[b.traj] - b.penalty / np.maximum(scale[tg], 1.0)[b.traj]

    # Step level, Eqs. 5-7
    if env_step is None:
        step_return = _discounted(b.traj, b.reward, gamma)
    else:
        anchor = np.where(env_step, anchor, -1)
        step_return = np.zeros(len(b.reward))
        step_return[env_step] = _discounted(b.traj[env_step], b.reward[env_step], gamma)
    step_return -= b.penalty  # after discounting: the penalty does not reach earlier steps (§0.3)
    group_of_state, n_states = _anchor_groups(b, anchor, distinct, similarity)
    a_step = _relative(step_return, group_of_state, n_states, norm, singleton="self")

    return a_episode + omega * a_step  # Eq. 8


def _anchor_groups(b: _Batch, anchor: np.ndarray, distinct: list[Any],
                   similarity: float | None) -> tuple[np.ndarray, int]:
    """Dense id of each row's anchor-state group G^S, scoped to its task group (or group and agent);
    a row without anchor gets a group of its own."""
    has_anchor = anchor >= 0
    if similarity is not None:
        key = _similarity_clusters(b.scope, anchor, distinct, similarity)
    else:
        key = b.scope * len(distinct) + anchor
    anchored_ids, distinct_keys = _dense_int_ids(key[has_anchor])
    n_groups = len(distinct_keys)
    ids = np.empty(len(anchor), dtype=np.int64)
    ids[has_anchor] = anchored_ids
    lone = int(np.count_nonzero(~has_anchor))
    ids[~has_anchor] = n_groups + np.arange(lone)
    return ids, n_groups + lone


# --------------------------------------------------------------------------------------------
# Potential-based shaping with milestones (MiRA-style)
# --------------------------------------------------------------------------------------------


def potential_shaping(traj_ids: Any, rewards: Any, potentials: Any, *, gamma: float,
                      lam: float = 1.0) -> np.ndarray:
    """Shaped per-step rewards, potential-based (Ng, Harada & Russell 1999; MiRA, arXiv 2603.19685).

        r'_t = r_t + λ · (γ · Φ(s_{t+1}) − Φ(s_t)),   Φ(s_T) := 0

    Φ(s_t) is the potential of the state row t acted from; s_{t+1} is the next row's state and the
    state after a trajectory's last row gets potential 0, whether the episode terminated or was
    truncated. With that choice and the same γ, the shaped discounted return from t is G_t − Φ(s_t)
    (docs/ALGORITHMS.md §5.3), so a potential that depends on the anchor state alone leaves GiGPO's step
    advantages unchanged. To give the final state a potential, append a row for it.

    Args:
        traj_ids: trajectory id of each row, rows of a trajectory in time order.
        rewards: r_t per row. potentials: Φ(s_t) per row.
        gamma: discount γ (use the estimator's γ). lam: weight λ of the shaping term.

    Returns:
        float64 array, r'_t per row in input order.
    """
    _check_gamma(gamma)
    reward = np.asarray(rewards, dtype=np.float64).reshape(-1)
    phi = np.asarray(potentials, dtype=np.float64).reshape(-1)
    traj, _ = _dense_ids(traj_ids)
    _check_length("traj_ids", traj, len(reward))
    _check_length("potentials", phi, len(reward))
    order, remaining = _time_layout(traj)
    phi_now = _ordered(phi, order)
    phi_next = np.append(phi_now[1:], 0.0)
    phi_next[remaining == 0] = 0.0  # Φ(s_T) = 0 keeps the shaping policy-invariant
    return reward + lam * (gamma * _unordered(phi_next, order) - phi)


def milestone_potential(traj_ids: Any, reached: Any, num_milestones: Any) -> np.ndarray:
    """Φ(s_t): the fraction of the task's milestones reached before row t (docs/ALGORITHMS.md §5.3).

        Φ(s_t) = (number of milestones reached in steps 0..t−1) / K

    A milestone reached by the action of step t shows in the next state, s_{t+1}. K = 0 gives Φ = 0.

    Args:
        traj_ids: trajectory id of each row, rows of a trajectory in time order.
        reached: number of milestones first reached by each row's action.
        num_milestones: K, a number or one per row.

    Returns:
        float64 array, Φ(s_t) per row in input order, in [0, 1].
    """
    count = np.asarray(reached, dtype=np.float64).reshape(-1)
    k = np.broadcast_to(np.asarray(num_milestones, dtype=np.float64), count.shape)
    if np.any(count < 0) or np.any(k < 0):
        raise ValueError("reached and num_milestones must be >= 0")
    traj, _ = _dense_ids(traj_ids)
    _check_length("traj_ids", traj, len(count))
    order, remaining = _time_layout(traj)
    c = _ordered(count, order)
    total = np.cumsum(c)
    first = np.flatnonzero(np.append(True, remaining[:-1] == 0))  # first row of each trajectory
    run = np.cumsum(np.append(True, remaining[:-1] == 0)) - 1
    before = total - c - (total[first] - c[first])[run]  # exclusive running count within the trajectory
    kk = _ordered(k, order)
    if np.any(before + c > kk + 1e-9):
        raise ValueError("a trajectory reached more milestones than num_milestones")
    phi = np.divide(before, kk, out=np.zeros_like(before), where=kk > 0)
    return _unordered(phi, order)


# --------------------------------------------------------------------------------------------
# Interaction-horizon schedule (ScalingInter-RL)
# --------------------------------------------------------------------------------------------


def horizon(step: int, rounds: int | Sequence[int], steps_per_stage: int) -> int:
    """Turn budget H(k) of training step k under the ScalingInter-RL schedule.

    AgentGym-RL (arXiv 2509.08755), for rounds = [h_0 < … < h_{M−1}] and stage length K:

        H(k) = rounds[min(⌊(k − 1) / K⌋, M − 1)],   k = 1, 2, …

    A single int ``rounds`` is the fixed-horizon baseline.
    """
    if isinstance(rounds, (int, np.integer)):
        rounds = [int(rounds)]
    rounds = list(rounds)
    if not rounds or any(int(h) != h or h < 1 for h in rounds):
        raise ConfigError(f"rounds must be one or more positive whole numbers of turns, got {rounds}")
    if any(b <= a for a, b in zip(rounds, rounds[1:])):
        raise ConfigError(f"rounds must increase from stage to stage, got {rounds}")
    if int(steps_per_stage) != steps_per_stage or steps_per_stage < 1:
        raise ConfigError(f"steps_per_stage must be a positive whole number, got {steps_per_stage}")
    if int(step) != step or step < 1:
        raise ValueError(f"step counts training steps from 1, got {step}")
    return int(rounds[min((int(step) - 1) // int(steps_per_stage), len(rounds) - 1)])


# --------------------------------------------------------------------------------------------
# Configuration and the trainer's entry point
# --------------------------------------------------------------------------------------------


class SummarizationConfig(BaseModel):
    """How trajectories that ran out of summary rounds (SUPO, arXiv 2510.06727) are trained."""

    model_config = ConfigDict(extra="forbid")

    overlong_mask: bool = Field(True, description="Give every step of an overlong trajectory loss mask 0.")
    overlong_in_stats: bool = Field(
        True, description="Count overlong trajectories in the group statistics (False leaves them out)."
    )

    @model_validator(mode="after")
    def _check(self) -> SummarizationConfig:
        if not self.overlong_in_stats and not self.overlong_mask:
            raise ConfigError(
                "summarization.overlong_in_stats=False needs overlong_mask=True: a trajectory left out of "
                "the statistics has no advantage to train on; set overlong_mask=True or overlong_in_stats=True"
            )
        return self


class CreditConfig(BaseModel):
    """Credit-assignment settings for :func:`compute` (docs/ALGORITHMS.md §9)."""

    model_config = ConfigDict(extra="forbid")

    estimator: Literal["grpo", "rloo", "gigpo"] = Field(
        "grpo", description="Advantage estimator: grpo, rloo or gigpo (episode + anchor-state levels)."
    )
    norm: Norm = Field(
        "std", description="Divide by the group std ('std', GRPO) or only subtract the mean ('mean', Dr. GRPO)."
    )
    episode_stats: EpisodeStats = Field(
        "trajectory", description="Episode statistics over one value per trajectory or over every step ('rows')."
    )
    per_agent: bool = Field(
        False, description="Normalize per (group, agent) over every step of that agent (Dr. MAS)."
    )
    gamma: float = Field(
        0.95, ge=0.0, le=1.0, description="Discount γ of GiGPO step returns and of milestone potential shaping."
    )
    omega: float = Field(1.0, ge=0.0, description="GiGPO weight ω of the step-level advantage.")
    milestones: Literal["off", "bonus", "potential"] = Field(
        "off", description="Milestone rewards: off, bonus (at the step reached) or potential (shaping by progress)."
    )
    milestone_weight: float = Field(
        1.0, ge=0.0, description="Scale of milestone rewards: bonus = weight × Milestone.weight; potential: λ."
    )
    invalid_penalty: float = Field(
        0.0, ge=0.0, description="Penalty p subtracted from the score of each invalid step."
    )
    similarity: float | None = Field(
        None, gt=0.0, lt=1.0, description="GiGPO: join text anchors whose difflib ratio ≥ this (None: exact)."
    )
    skip_errors: bool = Field(
        True, description="Leave trajectories with a system error out of the statistics and give them loss mask 0."
    )
    summarization: SummarizationConfig = Field(
        default_factory=SummarizationConfig, description="Masking of overlong trajectories (SUPO)."
    )

    @model_validator(mode="after")
    def _check(self) -> CreditConfig:
        # A field counts as "given" only when it differs from its default, so a full dump of a
        # valid config (as a run directory stores it) loads back.
        given = {n for n in self.model_fields_set
                 if getattr(self, n) != type(self).model_fields[n].get_default(call_default_factory=True)}
        if self.estimator != "gigpo":
            for name in ("omega", "similarity"):
                if name in given and getattr(self, name) is not None:
                    raise ConfigError(
                        f"{name} is only used by estimator='gigpo'; set estimator='gigpo' or remove {name}"
                    )
            if "gamma" in given and self.milestones != "potential":
                raise ConfigError(
                    "gamma is only used by estimator='gigpo' and milestones='potential'; "
                    f"remove gamma or change estimator (now {self.estimator!r})"
                )
        if self.estimator == "rloo" and "norm" in given:
            raise ConfigError("rloo has no normalization; remove norm or use estimator='grpo' or 'gigpo'")
        if self.milestones == "off" and "milestone_weight" in given:
            raise ConfigError(
                "milestone_weight has no effect with milestones='off'; set milestones='bonus' or 'potential'"
            )
        return self


@dataclass(frozen=True)
class CreditResult:
    """Per-step training signal: row k is step ``step_index[k]`` of trajectory ``traj_index[k]``.

    Rows follow the input: trajectories in order, steps in order (actions and summaries alike).
    """

    advantages: np.ndarray  # float64 A per row
    loss_mask: np.ndarray  # bool, False for rows that must carry no gradient
    traj_index: np.ndarray  # int64 position of the trajectory in the input list
    step_index: np.ndarray  # int64 position of the step in Trajectory.steps

    def __len__(self) -> int:
        return len(self.advantages)


def compute(trajectories: Sequence[Trajectory], config: CreditConfig | None = None, *,
            tasks: Mapping[str, Task] | Iterable[Task] | None = None) -> CreditResult:
    """Advantages and loss masks for every step of a batch of trajectories.

    Each step is a row: its group is ``Trajectory.group_id``, its reward the environment reward
    ``Step.result.reward`` (plus milestone rewards), its validity ``Step.result.valid``, its agent
    ``Step.agent`` and, for GiGPO, its anchor ``Step.state_key`` (a None key gets no step-level
    advantage).

    - Summary steps (``kind="summary"``, SUPO) are trained like actions and get their trajectory's
      episode advantage. Under GiGPO they are no environment step: they join no anchor-state group
      (their context is the summary, not an environment state) and are skipped when discounting, so
      A = A^E for a summary row. Every segment of a trajectory thus shares the trajectory's
      episode advantage, with statistics over whole trajectories, never over segments.
    - A turn that overflowed the context (``Trajectory.metadata["discarded_steps"]``) is discarded:
      it counts in the statistics like any step but gets loss mask 0 (docs/ALGORITHMS.md §4.2).
    - Overlong trajectories (summary budget exhausted) count in the statistics and get loss mask 0
      by default (``config.summarization``); left out of the statistics they get advantage 0.
    - Trajectories with ``error`` set (a system failure, not the agent's) are left out of the
      statistics and masked, unless ``skip_errors=False``.
    - Milestones: ``bonus`` adds ``milestone_weight × Milestone.weight`` to the reward of the step
      that reached each milestone (weight 1 when ``tasks`` is not given). ``potential`` shapes the
      rewards of action steps with :func:`potential_shaping`, λ = ``milestone_weight``, γ =
      ``gamma`` and Φ = :func:`milestone_potential`, which needs ``tasks`` to know each task's K.

    Args:
        trajectories: the batch; ``group_id`` ties the N samples of one task.
        config: the settings; None uses the defaults.
        tasks: the tasks by id (or an iterable of them), for milestone weights and counts.

    Returns:
        A :class:`CreditResult`.
    """
    cfg = config if config is not None else CreditConfig()
    if tasks is not None and not isinstance(tasks, Mapping):
        tasks = {t.id: t for t in tasks}
    if cfg.milestones == "potential" and tasks is None:
        raise ValueError("milestones='potential' needs the tasks to know how many milestones each has: "
                         "call compute(trajectories, config, tasks=...)")

    # The one pass over Step objects: read every field into flat lists.
    traj_index, step_index, agent, anchor, reward, valid, is_action, reached = [], [], [], [], [], [], [], []
    num_milestones = []
    for i, traj in enumerate(trajectories):
        task = tasks.get(traj.task_id) if tasks is not None else None
        if task is None and cfg.milestones == "potential":
            raise ValueError(f"milestones='potential': trajectory {traj.id!r} has task {traj.task_id!r}, "
                             "which is not among the tasks given")
        weight = {m.id: m.weight for m in task.milestones} if task is not None else {}
        num_milestones.append(len(weight))
        seen: set[str] = set()  # a milestone counts once per trajectory, at the step that reached it
        for j, step in enumerate(traj.steps):
            new = [m for m in (step.result.milestones if step.result is not None else ()) if m not in seen]
            seen.update(new)
            traj_index.append(i)
            step_index.append(j)
            agent.append(step.agent)
            anchor.append(step.state_key if step.kind == "action" else None)
            bonus = sum(weight.get(m, 1.0) for m in new) if cfg.milestones == "bonus" else 0.0
            reward.append(step.reward + cfg.milestone_weight * bonus)
            valid.append(step.valid)
            is_action.append(step.kind == "action")
            reached.append(sum(m in weight for m in new))  # progress counts the task's own milestones

    n = len(traj_index)
    traj_index_a = np.asarray(traj_index, dtype=np.int64)
    step_index_a = np.asarray(step_index, dtype=np.int64)
    reward_a = np.asarray(reward, dtype=np.float64)
    valid_a = np.asarray(valid, dtype=bool)
    action = np.asarray(is_action, dtype=bool)
    group, _ = _dense_ids([t.group_id for t in trajectories])
    overlong = np.asarray([t.overlong for t in trajectories], dtype=bool)
    failed = np.asarray([t.error is not None for t in trajectories], dtype=bool)

    if cfg.milestones == "potential" and n:
        k = np.asarray(num_milestones, dtype=np.float64)[traj_index_a]
        rows = np.flatnonzero(action)
        phi = milestone_potential(traj_index_a[rows], np.asarray(reached, dtype=np.float64)[rows], k[rows])
        reward_a[rows] = potential_shaping(traj_index_a[rows], reward_a[rows], phi, gamma=cfg.gamma,
                                           lam=cfg.milestone_weight)

    summ = cfg.summarization
    excluded = (failed & cfg.skip_errors) | (overlong & (not summ.overlong_in_stats))
    masked = excluded | (overlong & summ.overlong_mask)
    rows = np.flatnonzero(~excluded[traj_index_a])

    advantages = np.zeros(n)
    if len(rows):
        t, g = traj_index_a[rows], group[traj_index_a[rows]]
        agents = [agent[k] for k in rows] if cfg.per_agent else None
        common = dict(agent_ids=agents, valid=valid_a[rows], invalid_penalty=cfg.invalid_penalty)
        if cfg.estimator == "grpo":
            advantages[rows] = grpo(g, t, reward_a[rows], norm=cfg.norm, episode_stats=cfg.episode_stats, **common)
        elif cfg.estimator == "rloo":
            advantages[rows] = rloo(g, t, reward_a[rows], episode_stats=cfg.episode_stats, **common)
        else:
            b = _batch(g, t, reward_a[rows], **common)
            anchor_ids, distinct = _anchor_ids([anchor[k] for k in rows])
            advantages[rows] = _gigpo(b, anchor_ids, distinct, gamma=cfg.gamma, omega=cfg.omega, norm=cfg.norm,
                                      episode_stats=cfg.episode_stats, similarity=cfg.similarity,
                                      env_step=action[rows])
    loss_mask = ~masked[traj_index_a]
    for i, traj in enumerate(trajectories):  # SUPO: a discarded overflowing turn is in no segment (§4.2)
        for j in traj.metadata.get("discarded_steps", ()):
            loss_mask[(traj_index_a == i) & (step_index_a == j)] = False
    return CreditResult(advantages, loss_mask, traj_index_a, step_index_a)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")


def _check_length(name: str, values: np.ndarray, n: int) -> None:
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but rewards has {n}; give one per step row")
