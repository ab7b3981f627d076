"""The PPO-style policy loss of docs/ALGORITHMS.md §8: ratio clamp, clipped surrogate, dual-clip,
aggregation modes, KL estimators and token entropy.

Every tensor is ``[sequences, tokens]``; ``mask`` is 1.0 on the tokens that carry loss (the
agent's own sampled tokens) and 0.0 elsewhere. Advantages are already broadcast to tokens.
"""

from __future__ import annotations

from typing import Literal

import torch

AggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
KLKind = Literal["k1", "kl", "abs", "k2", "mse", "k3", "low_var_kl"]

AGG_MODES: tuple[str, ...] = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
KL_KINDS: tuple[str, ...] = ("k1", "kl", "abs", "k2", "mse", "k3", "low_var_kl")


def aggregate(values: torch.Tensor, mask: torch.Tensor, agg: str = "token-mean", *,
              num_tokens: float | None = None, num_seqs: float | None = None,
              norm_length: float | None = None, row_share: torch.Tensor | None = None) -> torch.Tensor:
    """Reduce per-token ``values`` to a scalar, docs/ALGORITHMS.md §8.4.

    - ``token-mean``: ``Σ L·M / Σ M``
    - ``seq-mean-token-mean``: mean over sequences of each sequence's masked token mean
    - ``seq-mean-token-sum``: mean over sequences of each sequence's masked token sum
    - ``seq-mean-token-sum-norm``: ``Σ L·M / L_max`` (verl's Dr. GRPO form: summed over
      sequences, no batch mean), with ``L_max = norm_length`` or the padded width

    A "sequence" is a row of ``values``, or, given ``row_share`` (each loss token's 1 / its step's
    loss tokens), a step's response: the trainer forwards several steps of one trajectory as one
    row, and their losses still average per step (layout L1). ``num_tokens`` / ``num_seqs``
    override the denominators, so a mini-batch split into micro-batches sums to exactly the
    mini-batch value (the trainer passes the mini-batch totals, ``num_seqs`` counting steps).
    Sequences without any loss token count as sequences but add nothing.
    """
    mask = mask.to(values.dtype)
    if agg == "token-mean":
        denom = mask.sum() if num_tokens is None else torch.as_tensor(num_tokens, dtype=values.dtype)
        return (values * mask).sum() / denom.clamp(min=1.0)
    if agg in ("seq-mean-token-mean", "seq-mean-token-sum"):
        share = None if row_share is None else row_share.to(values.dtype)
        if num_seqs is None:  # a step's shares sum to 1
            num_seqs = values.shape[0] if share is None else share.sum()
        if agg == "seq-mean-token-sum":
            return (values * mask).sum() / num_seqs
        if share is not None:
            return (values * mask * share).sum() / num_seqs
        return ((values * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / num_seqs
    if agg == "seq-mean-token-sum-norm":
        return (values * mask).sum() / (values.shape[-1] if norm_length is None else norm_length)
    raise ValueError(f"loss aggregation must be one of {', '.join(AGG_MODES)}, got {agg!r}")


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, *,
                      clip_low: float = 0.2, clip_high: float = 0.2,
                      clip_c: float | None = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token clipped surrogate loss and a 0/1 tensor marking tokens where clipping was active.

    ``ρ = exp(clamp(logπ − logπ_old, −20, 20))``; ``ℓ = max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high))``;
    dual-clip caps tokens with ``A < 0`` at ``−A·c`` (Ye et al. 2020, "Mastering Complex Control
    in MOBA Games", as in verl's ``compute_policy_loss``). ``clip_c=None`` turns dual-clip off.
    """
    ratio = torch.exp(torch.clamp(logp - old_logp, -20.0, 20.0))
    loss_unclipped = -advantages * ratio
    loss_clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(loss_unclipped, loss_clipped)
    clipped = (loss_clipped > loss_unclipped).to(logp.dtype)
    if clip_c is not None:
        if clip_c <= 1.0:
            raise ValueError(f"clip_ratio_c must be greater than 1 for dual-clip, got {clip_c}")
        capped = torch.minimum(loss, -advantages * clip_c)
        clipped = torch.where((advantages < 0) & (capped < loss), torch.ones_like(clipped), clipped)
        loss = torch.where(advantages < 0, capped, loss)
    return loss, clipped


def gspo_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                   row_ids: torch.Tensor, num_rows: int, *, clip_low: float = 0.2,
                   clip_high: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token GSPO loss and clip flags (Zheng et al. 2025, arXiv 2507.18071; docs/ALGORITHMS.md §8.4).

    Each step row's ratio is the sequence-level ``s = exp(mean_j (logπ − logπ_old))`` over its loss
    tokens, clipped as a whole; per token it is ``exp(logπ_j − sg(logπ_j) + sg(log s))`` (value ``s``,
    gradient ``s·∇logπ_j``: averaged over the row, ``∇s``), with the log-ratio capped at 10 as in verl.
    ``row_ids`` numbers each loss token's row (-1 off the mask); aggregate the result with
    ``seq-mean-token-mean``. No dual-clip.
    """
    on = mask > 0
    rows = row_ids.clamp(min=0)
    delta = (logp - old_logp).detach() * on
    total = torch.zeros(num_rows, dtype=logp.dtype, device=logp.device).index_add_(0, rows[on], delta[on])
    count = torch.zeros(num_rows, dtype=logp.dtype, device=logp.device).index_add_(
        0, rows[on], torch.ones_like(delta[on]))
    row_log_ratio = (total / count.clamp(min=1.0))[rows] * on
    ratio = torch.exp(torch.clamp(logp - logp.detach() + row_log_ratio, max=10.0))
    loss_unclipped = -advantages * ratio
    loss_clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    return torch.maximum(loss_unclipped, loss_clipped), (loss_clipped > loss_unclipped).to(logp.dtype)


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                clip_low: float = 0.2, clip_high: float = 0.2, clip_c: float | None = 3.0,
                agg: str = "token-mean") -> torch.Tensor:
    """The clipped policy-gradient loss of docs/ALGORITHMS.md §8.2-8.4 as a scalar.

    All four tensors are ``[sequences, tokens]``: current and sampling-time log-probs of the
    sampled tokens, advantages broadcast to tokens, and the loss mask. ``agg`` is one of
    ``token-mean`` (default), ``seq-mean-token-mean``, ``seq-mean-token-sum``,
    ``seq-mean-token-sum-norm``.
    """
    loss, _ = clipped_surrogate(logp, old_logp, advantages, clip_low=clip_low, clip_high=clip_high, clip_c=clip_c)
    return aggregate(loss, mask, agg)


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token KL estimate between the policy and a reference, docs/ALGORITHMS.md §8.5.

    With ``δ = logπ_ref − logπ``: ``k1``/``kl`` = −δ, ``abs`` = |δ|, ``k2``/``mse`` = ½δ²,
    ``k3``/``low_var_kl`` = e^δ − δ − 1 with δ clamped to ±20 and the result to ±10
    (Schulman, "Approximating KL divergence", 2020).
    """
    delta = ref_logp - logp
    if kind in ("k1", "kl"):
        return -delta
    if kind == "abs":
        return delta.abs()
    if kind in ("k2", "mse"):
        return 0.5 * delta.square()
    if kind in ("k3", "low_var_kl"):
        delta = torch.clamp(delta, -20.0, 20.0)
        return torch.clamp(torch.exp(delta) - delta - 1.0, -10.0, 10.0)
    raise ValueError(f"KL estimator must be one of {', '.join(KL_KINDS)}, got {kind!r}")


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Token entropy ``H = logsumexp(z) − Σ softmax(z)·z`` over the last dimension."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)
