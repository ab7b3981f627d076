"""The in-process vLLM policy: GPU machines only; skips with the reason elsewhere."""

from __future__ import annotations

import pytest

from agentgym.errors import PolicyError
from agentgym.policies import SamplingParams, load_policy
from agentgym.policies.vllm_policy import vllm_unavailable_reason
from agentgym.types import Message

REASON = vllm_unavailable_reason()


@pytest.mark.skipif(REASON is None, reason="vLLM can load here")
def test_unavailable_vllm_is_a_clear_policy_error():
    with pytest.raises(PolicyError, match="use the openai policy"):
        load_policy("vllm:/some/model")


@pytest.mark.slow
@pytest.mark.skipif(REASON is not None, reason=REASON or "")
async def test_vllm_generates_token_exact_completions():
    from agentgym.policies.hf import smollm2_path

    policy = load_policy(f"vllm:{smollm2_path()}", dtype="float32", enforce_eager=True)
    try:
        (c,) = await policy.generate([[Message(role="user", content="Say hi.")]], None,
                                     SamplingParams(temperature=0, max_new_tokens=8))
        assert c.token_ids and len(c.logprobs) == len(c.token_ids)
        assert policy.tokenizer.decode(c.token_ids, skip_special_tokens=True) == c.text
    finally:
        await policy.aclose()
