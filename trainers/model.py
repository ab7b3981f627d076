"""The trainable model: device and dtype, the policy it lives in, LoRA, the reference, and
per-token log-probs of sampled tokens.

Log-probs are computed only where the loss needs them: the decoder runs over the whole
sequence, but the output head runs only at the positions that predict a loss token. With short
actions after long prompts this saves most of the ``[tokens, vocabulary]`` logits memory.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from agentgym.trainers.checkpoint import is_peft


def resolve_device(name: str) -> Any:
    """``auto`` means CUDA when available, else CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: Any) -> Any:
    """``auto`` means bfloat16 on GPU and float32 on CPU (bf16 matmuls are slow on most CPUs)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def resolve_autocast(name: str, device: Any, dtype: Any) -> str | None:
    """The dtype forward passes autocast to under ``policy.autocast``, or None for none.

    ``auto`` is bfloat16 for float32 weights where bf16 matmuls run natively (a CUDA GPU with bf16,
    a CPU with AMX), and off elsewhere: on other CPUs bf16 is slower than float32.
    """
    import torch

    if name == "off":
        return None
    if name != "auto":
        return name
    if dtype != torch.float32:
        return None
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else None
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, but the only probe torch has
    return "bfloat16" if device.type == "cpu" and amx is not None and amx() else None


def check_trainable(name: str) -> None:
    """Refuse a ``policy.model`` that cannot be trained: before the run directory appears."""
    from pathlib import Path

    from agentgym.errors import ConfigError

    if not (name == "smollm2" or name.startswith("hf:")):
        raise ConfigError(f"policy.model must be 'smollm2' or 'hf:/path/to/model_dir' to be trained, got {name!r}")
    if name.startswith("hf:") and not Path(name[3:]).expanduser().is_dir():
        raise ConfigError(f"policy.model: {name[3:]!r} is not a model directory")


def load_policy(name: str, *, device: Any, dtype: Any, max_batch_size: int = 8, prefix_cache_tokens: int = 32768,
                autocast: str | None = None) -> Any:
    """A :class:`~agentgym.policies.hf.TransformersPolicy` for ``smollm2`` or ``hf:/path``."""
    from agentgym.policies import load_policy as _load

    check_trainable(name)
    return _load(name, dtype=str(dtype).removeprefix("torch."), device=str(device), max_batch_size=max_batch_size,
                 prefix_cache_tokens=prefix_cache_tokens, autocast=autocast)


def prepare_trainable(policy_config: Any, policy: Any = None) -> tuple[Any, Any, Any, int]:
    """Load (or take) the policy and make its model trainable as ``policy_config`` says.

    Returns ``(policy, model, device, pad_id)``: ``model`` is the policy's own model (wrapped with
    LoRA adapters when enabled), so updating it changes what the policy samples. ``policy.autocast``
    is the precision both sampling and training run their forward passes at.
    """
    device = resolve_device(policy_config.device)
    dtype = resolve_dtype(policy_config.dtype, device)
    autocast = resolve_autocast(policy_config.autocast, device, dtype)
    if policy is None:
        policy = load_policy(policy_config.model, device=device, dtype=dtype,
                             max_batch_size=policy_config.generation_batch_size,
                             prefix_cache_tokens=policy_config.prefix_cache_tokens, autocast=autocast)
    policy.autocast = autocast
    tokenizer = policy.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = policy.model
    if policy_config.lora.enable:
        lora = policy_config.lora
        model = add_lora(model, lora.r, lora.alpha, lora.dropout, lora.target_modules)
    checkpointing = policy_config.gradient_checkpointing
    if checkpointing or (checkpointing is None and device.type == "cuda"):
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2 renamed it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return policy, model, device, pad_id


def add_lora(model: Any, r: int, alpha: int, dropout: float, target_modules: Any) -> Any:
    """Inject LoRA adapters into ``model`` in place and return the peft wrapper (train it)."""
    from peft import LoraConfig, get_peft_model

    from agentgym.policies.hf import quiet_peft

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                        task_type="CAUSAL_LM")
    with quiet_peft():
        return get_peft_model(model, config)


def frozen_copy(model: Any) -> Any:
    """A frozen copy of ``model`` (the full fine-tuning reference)."""
    import copy

    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


@contextlib.contextmanager
def reference_mode(model: Any, ref: Any) -> Iterator[Any]:
    """Yield the module that computes reference log-probs: ``ref``, or ``model`` with adapters off."""
    if ref is not None:
        yield ref
    elif is_peft(model):
        with model.disable_adapter():
            yield model
    else:
        raise RuntimeError("no reference model: enable loss.use_kl_loss before building the trainer")


def _parts(model: Any) -> tuple[Any, Any] | None:
    inner = model.get_base_model() if is_peft(model) else model
    try:
        decoder, head = inner.get_decoder(), inner.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or head is None or getattr(inner.config, "final_logit_softcapping", None):
        return None
    return decoder, head


def token_logprobs(model: Any, input_ids: Any, attention_mask: Any, loss_mask: Any, *, temperature: float = 1.0,
                   with_entropy: bool = False, autocast: str | None = None) -> tuple[Any, Any]:
    """Log-probs (and entropies) of ``input_ids[:, j]`` wherever ``loss_mask[:, j]`` is set.

    Returns two ``[batch, tokens]`` tensors, zero where the mask is 0: ``log_softmax(z/T)`` of the
    token (T is the sampling temperature, so the ratio is taken against the distribution the
    tokens were drawn from) and the entropy of that distribution (zeros unless ``with_entropy``).
    ``autocast`` names the dtype the forward pass autocasts to (the sampler's precision), if any.
    """
    import torch

    from agentgym.trainers.loss import entropy_from_logits

    select = loss_mask[:, 1:].bool()
    targets = input_ids[:, 1:][select]
    parts = _parts(model)
    with torch.autocast(input_ids.device.type, dtype=getattr(torch, autocast or "bfloat16"), enabled=bool(autocast)):
        if parts is not None:
            decoder, head = parts
            hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            logits = head(hidden[:, :-1][select])
        else:
            logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1][select]
    logits = logits.float() / temperature
    lp = logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    shape = (input_ids.shape[0], input_ids.shape[1] - 1)
    pad = torch.zeros(input_ids.shape[0], 1, dtype=lp.dtype, device=lp.device)
    logp = torch.cat([pad, torch.zeros(shape, dtype=lp.dtype, device=lp.device).masked_scatter(select, lp)], dim=1)
    if not with_entropy:
        return logp, torch.zeros_like(logp)
    ent = entropy_from_logits(logits)
    entropy = torch.cat([pad, torch.zeros(shape, dtype=ent.dtype, device=ent.device).masked_scatter(select, ent)], dim=1)
    return logp, entropy


def collate(seqs: list[Any], pad_id: int, device: Any) -> dict[str, Any]:
    """Right-pad :class:`~agentgym.trainers.batching.Sequence` objects into tensors on ``device``."""
    import torch

    width = max(len(s) for s in seqs)
    n = len(seqs)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.float32)
    row_ids = torch.full((n, width), -1, dtype=torch.long)  # each loss token's step row, numbered across the batch
    rows_before = 0
    adv = torch.zeros((n, width), dtype=torch.float32)
    old = torch.zeros((n, width), dtype=torch.float32)
    known = torch.zeros((n, width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        k = len(s)
        ids[i, :k] = torch.tensor(s.input_ids, dtype=torch.long)
        attn[i, :k] = 1
        mask[i, :k] = torch.tensor(s.loss_mask, dtype=torch.float32)
        local = torch.tensor(s.row_index or [-1] * k, dtype=torch.long)
        row_ids[i, :k] = torch.where(local >= 0, local + rows_before, local)
        rows_before += len(s.rows)
        adv[i, :k] = torch.tensor(s.advantages, dtype=torch.float32)
        lp = torch.tensor(s.old_logprobs, dtype=torch.float32)
        known[i, :k] = ~lp.isnan() & (mask[i, :k] > 0)
        old[i, :k] = lp.nan_to_num(0.0)
    # each loss token's share of its step: 1 / the step's loss tokens (the seq-mean losses average per step)
    on = row_ids >= 0
    counts = torch.bincount(row_ids[on], minlength=rows_before).to(torch.float32)
    share = torch.zeros((n, width), dtype=torch.float32)
    share[on] = 1.0 / counts[row_ids[on]]
    return {"input_ids": ids.to(device), "attention_mask": attn.to(device), "loss_mask": mask.to(device),
            "row_share": share.to(device), "row_ids": row_ids.to(device), "num_rows": rows_before,
            "advantages": adv.to(device), "sampler_logprobs": old.to(device), "sampler_known": known.to(device)}
