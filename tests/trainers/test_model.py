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
