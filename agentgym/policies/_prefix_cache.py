"""Key/value states of finished generations, reused when a later prompt starts with the same tokens.

A multi-turn agent's prompt at turn t+1 is its turn-t prompt, its answer and the new observation.
Prefilling only the tokens past the cached prefix, instead of the whole history, saves most of
the prompt compute of long episodes. Entries are per conversation: the token ids that went
through the model and, per layer, their keys and values (``[heads, tokens, head_dim]``).

Entries are only valid for the weights that computed them: the cache empties itself when any
parameter of the model changes in place (a trainer's optimizer step bumps the tensors' version
counters). Beyond ``max_tokens`` cached tokens the least recently used entries go.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

Layers = list[tuple[Any, Any]]  # per layer: (keys, values), each [heads, tokens, head_dim]


def supports_prefix_reuse(model: Any) -> bool:
    """Whether ``model`` keeps a plain, full-length KV cache (no sliding windows or recurrent state)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    try:
        cache = DynamicCache(config=model.config)
    except Exception:
        return False
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


class PrefixCache:
    """Per-conversation KV states, looked up by the longest common token prefix."""

    def __init__(self, max_tokens: int) -> None:
        if max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        self.max_tokens = max_tokens
        self._entries: OrderedDict[int, tuple[np.ndarray, Layers]] = OrderedDict()
        self._next_key = 0
        self._tokens = 0
        self._weights: tuple | None = None
        self.hits = self.reused_tokens = 0  # for tests and benchmarks

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._tokens = 0

    def check_weights(self, model: Any) -> None:
        """Empty the cache if any parameter of ``model`` changed since the last call."""
        params = list(model.parameters())
        # in-place updates bump version counters; .to() and reloads swap the storage
        version = (sum(p._version for p in params), tuple(p.data_ptr() for p in params[:2]), params[0].dtype)
        if version != self._weights:
            self.clear()
            self._weights = version

    def lookup(self, prompt: list[int]) -> tuple[int, Layers | None, int | None]:
        """The longest cached prefix of ``prompt``, leaving at least one token to run: its length, KV and entry key."""
        ids = np.asarray(prompt)
        limit = len(prompt) - 1
        best_key, best = None, 0
        for key, (tokens, _) in self._entries.items():
            m = min(len(tokens), limit)
            if m <= best:
                continue
            differ = np.flatnonzero(tokens[:m] != ids[:m])
            n = int(differ[0]) if differ.size else m
            if n > best:
                best_key, best = key, n
        if best_key is None:
            return 0, None, None
        self._entries.move_to_end(best_key)
        self.hits += 1
        self.reused_tokens += best
        return best, [(k[:, :best], v[:, :best]) for k, v in self._entries[best_key][1]], best_key

    def store(self, tokens: list[int], layers: Layers, replaces: int | None = None) -> None:
        """Keep ``layers`` (the KV of ``tokens``) in place of entry ``replaces``, the conversation's last turn."""
        if replaces in self._entries:
            self._drop(replaces)
        ids = np.asarray(tokens)
        if len(ids) > self.max_tokens:
            return
        self._entries[self._next_key] = (ids, layers)
        self._next_key += 1
        self._tokens += len(ids)
        while self._tokens > self.max_tokens:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: int) -> None:
        tokens, _ = self._entries.pop(key)
        self._tokens -= len(tokens)
