"""The loss against every TV-P vector of docs/ALGORITHMS.md §8.7 (tolerance 2e-4)."""

import math
import subprocess
import sys

import pytest
import torch

from agentgym.trainers import kl_penalty, policy_loss
from agentgym.trainers.loss import aggregate, entropy_from_logits

TOL = 2e-4


def _token_loss(a: float, rho: float, **kw) -> float:
    t = lambda x: torch.tensor([[x]], dtype=torch.float64)  # noqa: E731
    return policy_loss(t(torch.log(torch.tensor(rho)).item()), t(0.0), t(a), t(1.0), **kw).item()


@pytest.mark.parametrize("a, rho, expected, expected_high", [
    (1.0, 1.3, -1.2, -1.28),
    (1.0, 0.5, -0.5, None),
    (-1.0, 0.7, 0.8, None),
    (-1.0, 1.1, 1.1, None),
    (-1.0, 4.0, 3.0, None),
    (1.0, 4.0, -1.2, None),
    (0.5, 1.25, -0.6, -0.625),
])
def test_per_token_surrogate(a, rho, expected, expected_high):
    assert _token_loss(a, rho) == pytest.approx(expected, abs=TOL)
    if expected_high is not None:
        assert _token_loss(a, rho, clip_high=0.28) == pytest.approx(expected_high, abs=TOL)


def test_dual_clip_off():
    assert _token_loss(-1.0, 4.0, clip_c=None) == pytest.approx(4.0, abs=TOL)


def test_ratio_is_clamped():
    # logπ − logπ_old = 1000 would overflow exp without the ±20 clamp
    t = lambda x: torch.tensor([[x]], dtype=torch.float32)  # noqa: E731
    assert torch.isfinite(policy_loss(t(1000.0), t(0.0), t(-1.0), t(1.0), clip_c=None))


LOSSES = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize("agg, expected", [
    ("token-mean", 2.5), ("seq-mean-token-mean", 3.0), ("seq-mean-token-sum", 5.0),
    ("seq-mean-token-sum-norm", 2.5),
])
def test_aggregation_modes(agg, expected):
    assert aggregate(LOSSES, MASK, agg).item() == pytest.approx(expected, abs=TOL)
    # through policy_loss: with ρ = 1 and A = −L, the unclipped loss is L itself
    zeros = torch.zeros_like(LOSSES)
    got = policy_loss(zeros, zeros, -LOSSES, MASK, agg=agg, clip_c=None).item()
    assert got == pytest.approx(expected, abs=TOL)


def test_original_dr_grpo_form_is_not_ours():
    # documented choice: verl's Σ/L_max (2.5), not mean_i(sum/L) (1.25)
    assert aggregate(LOSSES, MASK, "seq-mean-token-sum-norm").item() != pytest.approx(1.25)


def test_micro_batches_sum_to_the_mini_batch_value():
    vals, mask = torch.randn(6, 5), (torch.rand(6, 5) > 0.3).float()
    for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"):
        whole = aggregate(vals, mask, agg)
        parts = sum(aggregate(vals[i:i + 2], mask[i:i + 2], agg, num_tokens=mask.sum().item(), num_seqs=6,
                              norm_length=5) for i in range(0, 6, 2))
        assert parts.item() == pytest.approx(whole.item(), abs=1e-5), agg


def test_bad_modes_name_the_choices():
    with pytest.raises(ValueError, match="token-mean"):
        aggregate(LOSSES, MASK, "mean")
    with pytest.raises(ValueError, match="low_var_kl"):
        kl_penalty(torch.zeros(1), torch.zeros(1), "k4")


@pytest.mark.parametrize("logp, ref, k1, ab, k2, k3", [
    (-1.0, -1.5, 0.5, 0.5, 0.125, 0.1065),
    (-2.0, -0.5, -1.5, 1.5, 1.125, 1.9817),
])
def test_kl_estimators(logp, ref, k1, ab, k2, k3):
    lp, rp = torch.tensor([logp]), torch.tensor([ref])
    for kinds, want in ((("k1", "kl"), k1), (("abs",), ab), (("k2", "mse"), k2), (("k3", "low_var_kl"), k3)):
        for kind in kinds:
            assert kl_penalty(lp, rp, kind).item() == pytest.approx(want, abs=TOL), kind


def test_k3_is_clamped():
    assert kl_penalty(torch.tensor([-30.0]), torch.tensor([0.0]), "k3").item() == pytest.approx(10.0)


def test_entropy_matches_definition():
    logits = torch.randn(3, 7)
    p = torch.softmax(logits, -1)
    assert torch.allclose(entropy_from_logits(logits), -(p * p.log()).sum(-1), atol=1e-5)


def test_gradient_sign_raises_logp_of_positive_advantage():
    logp = torch.tensor([[-1.0]], requires_grad=True)
    policy_loss(logp, torch.tensor([[-1.0]]), torch.tensor([[1.0]]), torch.tensor([[1.0]])).backward()
    assert logp.grad.item() < 0  # gradient descent increases logp


def test_import_is_light():
    code = "import agentgym, agentgym.trainers, agentgym.trainers.config, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _gspo(logp, old, adv, mask, rows, n, **clip):
    from agentgym.trainers.loss import gspo_surrogate

    return gspo_surrogate(logp, old, adv, mask, rows, n, **clip)


def test_gspo_ratio_is_the_step_s_and_its_gradient_that_of_the_sequence_ratio():
    # two rows in one sequence: tokens 0-1 (log-ratios 0.1, 0.3) and token 3 (log-ratio -0.2); token 2 is no loss
    old = torch.zeros(1, 4)
    logp = torch.tensor([[0.1, 0.3, 0.7, -0.2]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    rows = torch.tensor([[0, 0, -1, 1]])
    adv = torch.tensor([[1.0, 1.0, 0.0, -1.0]])
    loss, clipped = _gspo(logp, old, adv, mask, rows, 2, clip_low=0.2, clip_high=0.28)
    s0, s1 = math.exp(0.2), math.exp(-0.2)
    assert loss[0, [0, 1, 3]].tolist() == pytest.approx([-s0, -s0, s1], abs=TOL)
    assert clipped.sum().item() == 0
    share = torch.tensor([[0.5, 0.5, 0.0, 1.0]])
    aggregate(loss, mask, "seq-mean-token-mean", row_share=share).backward()
    # L = (−s0 + s1) / 2 rows, and ∂s/∂logπ_j = s / (the row's tokens)
    assert logp.grad[0].tolist() == pytest.approx([-s0 / 4, -s0 / 4, 0.0, s1 / 2], abs=TOL)


def test_gspo_clips_the_whole_step():
    logp = torch.tensor([[0.4, 0.6]], requires_grad=True)  # s = e^0.5 = 1.65 > 1 + 0.28
    loss, clipped = _gspo(logp, torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), torch.tensor([[0, 0]]), 1,
                          clip_low=0.2, clip_high=0.28)
    assert loss[0].tolist() == pytest.approx([-1.28, -1.28]) and clipped[0].tolist() == [1.0, 1.0]
    loss.sum().backward()
    assert logp.grad.abs().sum().item() == 0  # clipped: no gradient


def test_gspo_does_not_depend_on_how_steps_are_batched():
    from agentgym.trainers.batching import build_sequences
    from agentgym.trainers.model import collate
    from agentgym.types import Step, StepResult, Trajectory

    steps = [Step(index=0, prompt_ids=[1, 2], response_ids=[10, 11], result=StepResult(observation="o")),
             Step(index=1, prompt_ids=[1, 2, 10, 11, 3], response_ids=[12], result=StepResult(observation="o")),
             Step(index=2, prompt_ids=[1, 2, 10, 11, 3, 12, 4], response_ids=[13, 14, 15],
                  result=StepResult(observation="o"))]
    traj = Trajectory(id="t", group_id="g", task_id="x", env="e", steps=steps)
    advantages = {(0, 0): 1.0, (0, 1): -0.5, (0, 2): 2.0}
    gen = torch.Generator().manual_seed(0)
    token_lp = {tok: -torch.rand(1, generator=gen).item() for tok in range(10, 16)}  # the policy, per sampled token
    results = []
    for merge in (True, False):
        batch = collate(build_sequences([traj], advantages, merge=merge), 0, "cpu")
        logp = torch.tensor([[token_lp.get(t, 0.0) for t in row] for row in batch["input_ids"].tolist()])
        loss, _ = _gspo(logp, torch.full_like(logp, -0.5), batch["advantages"], batch["loss_mask"],
                        batch["row_ids"], batch["num_rows"], clip_low=0.2, clip_high=0.28)
        results.append(aggregate(loss, batch["loss_mask"], "seq-mean-token-mean", row_share=batch["row_share"]).item())
        assert batch["num_rows"] == 3
    assert results[0] == pytest.approx(results[1], abs=1e-6)
