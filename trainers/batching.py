"""Trajectories to training sequences: exactly the sampled token ids, loss only on the agent's own
generated tokens.

A step row ``(i, t)`` contributes its ``response_ids`` (what the policy sampled, actions and
summaries alike) with its advantage; everything else in the sequence -- system prompt, task,
observations, tool outputs, other agents' turns, chat-template glue -- has loss mask 0.

Where a trajectory's context is append-only (step t+1's ``prompt_ids`` starts with step t's
``prompt_ids + response_ids``), the chain of steps is forwarded once as one sequence, the
sequence being the last step's prompt and response; every step's response keeps its own
position and advantage. Where it is not (a sliding window, a summary that starts a new segment,
a chat template that re-renders earlier turns), a new sequence starts. The check is by token
prefix, so it never trusts the context manager's description of itself.

Pure Python: tensors are made in :mod:`agentgym.trainers.rl`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from agentgym.types import Step, Trajectory

Row = tuple[int, int]


@dataclass
class Sequence:
    """One forward pass worth of tokens.

    ``loss_mask[j] == 1`` means token ``input_ids[j]`` was sampled by the policy and carries loss
    with ``advantages[j]``; its log-prob comes from the logits at position ``j − 1``.
    ``old_logprobs[j]`` is the sampler's log-prob of that token (NaN where unknown).
    ``row_index[j]`` is the position in ``rows`` of the step row token j belongs to (-1 off the mask):
    the seq-mean losses and GSPO's ratio are per step, merged or not (ALGORITHMS.md §8.4, layout L1).
    """

    input_ids: list[int]
    loss_mask: list[float]
    advantages: list[float]
    old_logprobs: list[float]
    trajectory: int
    rows: list[Row] = field(default_factory=list)
    row_index: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_loss_tokens(self) -> int:
        """Tokens that carry loss."""
        return int(sum(self.loss_mask))


@dataclass
class BatchStats:
    """What batching kept and dropped, for the metrics line."""

    sequences: int = 0
    rows: int = 0
    loss_tokens: int = 0
    tokens: int = 0
    merged_rows: int = 0
    skipped_rows: int = 0
    dropped_long: int = 0


def is_continuation(prev: Step, nxt: Step) -> bool:
    """Whether ``nxt``'s prompt is ``prev``'s prompt and response followed by more tokens."""
    if prev.prompt_ids is None or prev.response_ids is None or nxt.prompt_ids is None:
        return False
    if prev.segment != nxt.segment:
        return False
    head = len(prev.prompt_ids) + len(prev.response_ids)
    return (len(nxt.prompt_ids) >= head and nxt.prompt_ids[:len(prev.prompt_ids)] == prev.prompt_ids
            and nxt.prompt_ids[len(prev.prompt_ids):head] == prev.response_ids)


def _chains(steps: list[Step], merge: bool) -> list[list[int]]:
    """Split step indices into runs whose contexts are append-only: a step continues the latest run
    (one shared conversation) or its own agent's latest run (roles with conversations of their own)."""
    chains: list[list[int]] = []
    last: dict[str, list[int]] = {}
    for t, step in enumerate(steps):
        if step.prompt_ids is None or step.response_ids is None:
            continue
        candidates = chains[-1:]
        own = last.get(step.agent)
        if own is not None and own is not chains[-1]:
            candidates.append(own)
        chain = next((c for c in candidates if merge and is_continuation(steps[c[-1]], step)), None)
        if chain is None:
            chain = [t]
            chains.append(chain)
        else:
            chain.append(t)
        last[step.agent] = chain
    return chains


def build_sequences(trajectories: list[Trajectory], advantages: Mapping[Row, float],
                    row_mask: Mapping[Row, bool] | None = None, *, merge: bool = True,
                    train_agents: Iterable[str] | None = None, max_len: int | None = None,
                    stats: BatchStats | None = None) -> list[Sequence]:
    """Turn trajectories into :class:`Sequence` objects.

    ``advantages`` maps a step row ``(trajectory index, step index)`` to its advantage; rows
    missing from it, rows with ``row_mask`` False, and steps of agents outside ``train_agents``
    keep loss mask 0. Steps without token ids (scripted policies) are skipped. Sequences longer
    than ``max_len`` are dropped and counted in ``stats.dropped_long``.
    """
    agents = set(train_agents) if train_agents is not None else None
    stats = stats if stats is not None else BatchStats()
    out: list[Sequence] = []
    for i, traj in enumerate(trajectories):
        for chain in _chains(traj.steps, merge):
            last = traj.steps[chain[-1]]
            ids = list(last.prompt_ids or []) + list(last.response_ids or [])
            mask = [0.0] * len(ids)
            index = [-1] * len(ids)
            adv = [0.0] * len(ids)
            old = [math.nan] * len(ids)
            rows: list[Row] = []
            for t in chain:
                step = traj.steps[t]
                start, resp = len(step.prompt_ids or []), step.response_ids or []
                row = (i, t)
                carries = (row in advantages and (row_mask is None or row_mask.get(row, True))
                           and (agents is None or step.agent in agents) and len(resp) > 0)
                if not carries:
                    stats.skipped_rows += 1
                    continue
                a = float(advantages[row])
                lps = step.logprobs if step.logprobs is not None and len(step.logprobs) == len(resp) else None
                for j in range(len(resp)):
                    mask[start + j] = 1.0
                    index[start + j] = len(rows)
                    adv[start + j] = a
                    if lps is not None:
                        old[start + j] = float(lps[j])
                rows.append(row)
            if not rows:
                continue
            if max_len is not None and len(ids) > max_len:
                stats.dropped_long += 1
                continue
            stats.merged_rows += len(rows) - 1
            stats.rows += len(rows)
            out.append(Sequence(ids, mask, adv, old, i, rows, index))
    stats.sequences += len(out)
    stats.loss_tokens += sum(s.num_loss_tokens for s in out)
    stats.tokens += sum(len(s) for s in out)
    return out


def split(items: list, parts: int) -> list[list]:
    """Split ``items`` into ``parts`` contiguous chunks of near-equal size (none empty)."""
    parts = max(1, min(parts, len(items)))
    size, rest = divmod(len(items), parts)
    out, start = [], 0
    for k in range(parts):
        end = start + size + (1 if k < rest else 0)
        out.append(items[start:end])
        start = end
    return out
