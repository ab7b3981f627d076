"""Per-token log-probs of sampled tokens, collation, and the LoRA reference (adapters off)."""

import math

import pytest

torch = pytest.importorskip("torch")

from agentgym.trainers import model as M  # noqa: E402
from agentgym.trainers.batching import Sequence  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(),
            AutoTokenizer.from_pretrained(tiny_model_dir))


def _seqs():
    return [Sequence([2, 5, 6, 7, 8, 9], [0, 0, 1, 1, 0, 1], [0, 0, 1, 1, 0, -1], [math.nan, math.nan, -1, -2, math.nan, -3], 0),
            Sequence([2, 10, 11], [0, 1, 1], [0, 2, 2], [math.nan] * 3, 1)]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_match_full_forward(tiny, temperature):
    model, _ = tiny
    batch = M.collate(_seqs(), pad_id=0, device="cpu")
    with torch.no_grad():
        logp, ent = M.token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"],
                                     temperature=temperature, with_entropy=True)
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits / temperature
        ref = torch.log_softmax(full[:, :-1], -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
        p = torch.softmax(full[:, :-1], -1)
        ref_ent = -(p * torch.log_softmax(full[:, :-1], -1)).sum(-1)
    m = batch["loss_mask"][:, 1:].bool()
    assert torch.allclose(logp[:, 1:][m], ref[m], atol=1e-5)
    assert torch.allclose(ent[:, 1:][m], ref_ent[m], atol=1e-4)
    assert (logp[:, 1:][~m] == 0).all() and (logp[:, 0] == 0).all()


def test_collate_pads_right_and_marks_known_sampler_logprobs():
    batch = M.collate(_seqs(), pad_id=0, device="cpu")
    assert batch["input_ids"].shape == (2, 6)
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0]
    assert batch["sampler_known"][0].tolist() == [False, False, True, True, False, True]
    assert batch["advantages"][0].tolist() == [0, 0, 1, 1, 0, -1]


def test_lora_reference_is_the_base_with_adapters_off(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    batch = M.collate(_seqs(), pad_id=0, device="cpu")
    args = (batch["input_ids"], batch["attention_mask"], batch["loss_mask"])
    with torch.no_grad():
        before, _ = M.token_logprobs(base, *args)
    lora = M.add_lora(base, r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)  # move the adapted policy away from the base
        moved, _ = M.token_logprobs(lora, *args)
        with M.reference_mode(lora, None) as reference:
            ref, _ = M.token_logprobs(reference, *args)
    assert not torch.allclose(moved, before, atol=1e-4)
    assert torch.allclose(ref, before, atol=1e-5)
    assert sum(p.numel() for p in lora.parameters() if p.requires_grad) < sum(p.numel() for p in lora.parameters()) / 2


def test_resolve_autocast_follows_the_setting_and_the_hardware():
    cpu = torch.device("cpu")
    assert M.resolve_autocast("off", cpu, torch.float32) is None
    assert M.resolve_autocast("bfloat16", cpu, torch.float32) == "bfloat16"
    assert M.resolve_autocast("auto", cpu, torch.bfloat16) is None  # weights already half precision
    amx = torch.cpu._is_amx_tile_supported()
    assert M.resolve_autocast("auto", cpu, torch.float32) == ("bfloat16" if amx else None)


def test_autocast_training_keeps_float32_weights_and_tracks_the_float32_logprobs(tiny):
    model, _ = tiny
    batch = M.collate(_seqs(), pad_id=0, device="cpu")
    args = (batch["input_ids"], batch["attention_mask"], batch["loss_mask"])
    with torch.no_grad():
        exact, _ = M.token_logprobs(model, *args)
    half, _ = M.token_logprobs(model, *args, autocast="bfloat16")
    m = batch["loss_mask"].bool()
    assert not torch.equal(half[m], exact[m])  # the matmuls did run in bf16
    assert torch.allclose(half[m], exact[m], atol=0.05)
    half[m].sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == torch.float32 for g in grads) and any(g.abs().sum() > 0 for g in grads)
    model.zero_grad(set_to_none=True)


async def test_an_autocast_policy_samples_what_autocast_training_scores(tiny_model_dir):
    from agentgym.policies.base import SamplingParams
    from agentgym.policies.hf import TransformersPolicy
    from agentgym.types import Message

    policy = TransformersPolicy(tiny_model_dir, max_batch_size=4, autocast="bfloat16")
    conv = [Message(role="user", content="the door is red .")]
    params = SamplingParams(temperature=1.0, max_new_tokens=4)
    (first,) = await policy.generate([conv], None, params, seeds=[3])
    conv = [*conv, Message(role="assistant", content=first.text), Message(role="user", content="wrong .")]
    (later,) = await policy.generate([conv], None, params, seeds=[4])  # runs on the cached bf16 prefix
    assert policy._prefix.hits == 1
    ids = torch.tensor([later.prompt_ids + later.token_ids])
    mask = torch.zeros_like(ids)
    mask[0, len(later.prompt_ids):] = 1
    with torch.no_grad():
        scored, _ = M.token_logprobs(policy.model, ids, torch.ones_like(ids), mask, autocast="bfloat16")
    assert scored[0, len(later.prompt_ids):].tolist() == pytest.approx(later.logprobs, abs=0.05)
    with pytest.raises(ValueError, match="autocast"):
        TransformersPolicy(policy.model, policy.tokenizer, autocast="bf16")
