"""The embedded transformers back end on the real SmolLM2-135M-Instruct (loaded once per session)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agentgym.errors import PolicyError
from agentgym.policies import SamplingParams
from agentgym.types import Message, ToolSpec

pytestmark = pytest.mark.slow

ADD = ToolSpec(name="add", description="Add n to the value.",
               parameters={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
SHORT = [Message(role="user", content="Say hello.")]
LONG = [Message(role="system", content="You are terse."),
        Message(role="user", content="Name three colors of the rainbow, then explain why the sky is blue.")]


def forward_logprobs(policy, prompt_ids: list[int], token_ids: list[int], temperature: float) -> list[float]:
    """log_softmax(logits / T) of each sampled token, from one plain forward pass (no cache, no padding)."""
    import torch

    ids = torch.tensor([prompt_ids + token_ids])
    with torch.inference_mode():
        logits = policy.model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return logp.gather(-1, torch.tensor(token_ids)[:, None]).squeeze(-1).tolist()


async def test_completions_are_token_exact_with_sampling_logprobs(smollm2):
    params = SamplingParams(temperature=0.7, max_new_tokens=12, seed=3)
    out = await smollm2.generate([SHORT, LONG], [ADD], params)
    assert len(out) == 2
    for conv, c in zip([SHORT, LONG], out):
        assert c.prompt_ids == smollm2.render(conv, [ADD])
        assert smollm2.tokenizer.decode(c.token_ids, skip_special_tokens=True) == c.text
        assert len(c.logprobs) == len(c.token_ids) and 1 <= len(c.token_ids) <= 12
        assert c.finish_reason == ("length" if len(c.token_ids) == 12 else "stop")
        # batched, left-padded, KV-cached sampling reports what a plain forward pass gives
        expected = forward_logprobs(smollm2, c.prompt_ids, c.token_ids, 0.7)
        assert c.logprobs == pytest.approx(expected, abs=2e-3)


async def test_prompt_renders_tools_into_the_system_message(smollm2):
    text = smollm2.tokenizer.decode(smollm2.render(LONG, [ADD]))
    assert text.startswith("<|im_start|>system\nYou are terse.")
    assert '"name": "add"' in text and "<tool_call>" in text
    assert text.endswith("<|im_start|>assistant\n")


async def test_seeded_sampling_is_reproducible_and_greedy_batches_match_single(smollm2):
    params = SamplingParams(temperature=1.0, max_new_tokens=6, seed=11)
    a = await smollm2.generate([LONG], None, params)
    b = await smollm2.generate([LONG], None, params)
    assert a[0].token_ids == b[0].token_ids
    greedy = SamplingParams(temperature=0, max_new_tokens=6)
    single = await smollm2.generate([LONG], None, greedy)
    batched = await smollm2.generate([SHORT, LONG], None, greedy)
    assert batched[1].token_ids == single[0].token_ids
    # greedy logprobs are those of the raw model distribution
    assert single[0].logprobs == pytest.approx(forward_logprobs(smollm2, single[0].prompt_ids, single[0].token_ids, 1.0),
                                               abs=2e-3)


async def test_per_conversation_seeds_ignore_batch_mates(smollm2):
    params = SamplingParams(temperature=1.0, max_new_tokens=6)
    (alone,) = await smollm2.generate([LONG], None, params, seeds=[7])
    batched = await smollm2.generate([SHORT, LONG, LONG], None, params, seeds=[1, 7, 8])
    assert batched[1].token_ids == alone.token_ids
    others = [(await smollm2.generate([LONG], None, params, seeds=[s]))[0].token_ids for s in (8, 9, 10)]
    assert any(o != alone.token_ids for o in others)
    with pytest.raises(PolicyError, match="2 seeds for 1 prompts"):
        await smollm2.generate([LONG], None, params, seeds=[1, 2])


async def test_a_later_turn_reuses_the_cached_prefix_and_samples_what_a_full_prefill_would(smollm2):
    from agentgym.policies.hf import TransformersPolicy

    fresh = TransformersPolicy(smollm2.model, smollm2.tokenizer, prefix_cache_tokens=0)  # prefills every prompt
    params = SamplingParams(temperature=1.0, max_new_tokens=8)
    convs = [list(LONG), list(SHORT)]
    for turn in range(2):
        hits, reused = smollm2._prefix.hits, smollm2._prefix.reused_tokens
        cached = await smollm2.generate(convs, None, params, seeds=[5, 6])
        full = await fresh.generate(convs, None, params, seeds=[5, 6])
        for c, f in zip(cached, full):
            assert c.token_ids == f.token_ids and c.prompt_ids == f.prompt_ids
            assert c.logprobs == pytest.approx(f.logprobs, abs=1e-4)
        if turn:  # each history was found: all of the earlier prompt and answer went unrun
            assert smollm2._prefix.hits - hits == 2
            assert smollm2._prefix.reused_tokens - reused >= sum(len(p) for p in first_prompts)
        first_prompts = [c.prompt_ids for c in cached]
        for conv, c in zip(convs, cached):
            conv += [Message(role="assistant", content=c.text), Message(role="user", content="Go on.")]


async def test_the_prefix_cache_empties_when_an_optimizer_step_changes_the_weights(tmp_path):
    import torch

    from agentgym.policies.hf import TransformersPolicy
    from agentgym.trainers.tiny import make_tiny_model

    policy = TransformersPolicy(make_tiny_model(tmp_path / "tiny"), max_batch_size=4)
    conv = [Message(role="user", content="the door is red .")]
    params = SamplingParams(temperature=1.0, max_new_tokens=3)
    (first,) = await policy.generate([conv], None, params, seeds=[1])
    conv = [*conv, Message(role="assistant", content=first.text), Message(role="user", content="wrong .")]
    await policy.generate([conv], None, params, seeds=[2])
    assert policy._prefix.hits == 1 and len(policy._prefix) == 1  # the longer history superseded the first
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-2)
    policy.model(input_ids=torch.tensor([first.prompt_ids])).logits.sum().backward()
    optimizer.step()
    (after,) = await policy.generate([conv], None, params, seeds=[2])
    assert policy._prefix.hits == 1  # stale states from the old weights are not used
    (fresh,) = await TransformersPolicy(policy.model, policy.tokenizer, prefix_cache_tokens=0).generate(
        [conv], None, params, seeds=[2])
    assert after.logprobs == pytest.approx(fresh.logprobs, abs=1e-5)


async def test_nucleus_renormalizes_and_stop_strings_end_completions(smollm2):
    tiny_nucleus = SamplingParams(temperature=1.0, top_p=1e-6, max_new_tokens=4, seed=0)
    (c,) = await smollm2.generate([LONG], None, tiny_nucleus)
    assert c.logprobs == pytest.approx([0.0] * len(c.token_ids), abs=1e-6)  # only the top token is left
    counting = [Message(role="user", content="Count from 1 to 10, separated by commas.")]
    (s,) = await smollm2.generate([counting], None, SamplingParams(temperature=0, max_new_tokens=30, stop=[","]))
    assert s.finish_reason == "stop" and s.text.endswith(",") and s.text.count(",") == 1
    assert smollm2.tokenizer.decode(s.token_ids, skip_special_tokens=True) == s.text
    (n,) = await smollm2.generate([counting], None, SamplingParams(temperature=0, max_new_tokens=3))
    assert n.finish_reason == "length" and len(n.token_ids) == 3


async def test_generation_reads_the_live_model(smollm2):
    import torch

    norm = smollm2.model.model.norm.weight
    saved = norm.detach().clone()
    smollm2.model.train()
    try:
        with torch.no_grad():
            norm.zero_()  # every logit becomes 0: a uniform distribution
        (c,) = await smollm2.generate([SHORT], None, SamplingParams(temperature=1.0, max_new_tokens=3, seed=0))
        assert c.logprobs == pytest.approx([-math.log(smollm2.model.config.vocab_size)] * 3, abs=1e-4)
        assert smollm2.model.training  # the trainer's mode is left as it was
    finally:
        with torch.no_grad():
            norm.copy_(saved)
        smollm2.model.eval()


def test_model_cache_location_and_reload(smollm2, monkeypatch, tmp_path):
    from agentgym.policies.hf import TransformersPolicy, cache_root, smollm2_path

    path = smollm2_path()
    assert path.parent == cache_root() / "models"
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    assert not list(path.parent.glob(f".{path.name}.*"))  # no temporary directory left behind
    monkeypatch.setenv("AGENTGYM_CACHE", str(tmp_path / "elsewhere"))
    assert cache_root() == tmp_path / "elsewhere"
    with pytest.raises(PolicyError, match="not a Hugging Face model directory"):
        TransformersPolicy(tmp_path)
    reloaded = TransformersPolicy(Path(path), name="copy")
    assert reloaded.tokenizer.chat_template == smollm2.tokenizer.chat_template


async def test_cancelling_a_generation_stops_its_thread_at_the_next_token(smollm2):
    import asyncio
    import time

    story = [Message(role="user", content="Write a very long story about a lighthouse keeper.")]
    call = asyncio.ensure_future(smollm2.generate([story], None, SamplingParams(temperature=0, max_new_tokens=400)))
    await asyncio.sleep(1.0)
    call.cancel()
    started = time.perf_counter()
    free = await asyncio.to_thread(smollm2._lock.acquire, True, 10)  # the model is free once the thread stops
    assert free and time.perf_counter() - started < 2.0  # 400 tokens would take far longer
    smollm2._lock.release()
    (after,) = await smollm2.generate([story], None, SamplingParams(temperature=0, max_new_tokens=3))
    assert len(after.token_ids) == 3  # the policy works on


async def test_closed_policy_raises(smollm2):
    from agentgym.policies.hf import TransformersPolicy

    other = TransformersPolicy(smollm2.model, smollm2.tokenizer, name="view")
    await other.aclose()
    with pytest.raises(PolicyError, match="closed"):
        await other.generate([SHORT], None, SamplingParams())


@pytest.mark.parametrize("config, expected", [
    ({"max_position_embeddings": 8192}, 8192),
    ({"max_position_embeddings": 8192, "rope_parameters": {"rope_type": "default", "rope_theta": 1e5}}, 8192),
    ({"max_position_embeddings": 64, "rope_scaling": {"rope_type": "dynamic", "factor": 4}}, 256),
    ({"max_position_embeddings": 32768,
      "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}, 131072),
    ({"max_position_embeddings": 131072,  # Llama 3.1 gives the stretched limit already
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}}, 131072),
    ({}, None),
])
def test_the_context_length_counts_rope_scaling(config, expected):
    from types import SimpleNamespace

    from agentgym.policies.hf import _context_length

    assert _context_length(SimpleNamespace(**config)) == expected
