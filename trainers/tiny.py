"""A tiny, randomly initialized Llama model and a small multi-step environment, built locally.

For tests, examples and smoke runs of the trainer on CPU in seconds: nothing is downloaded.

- :func:`make_tiny_model` writes a Hugging Face model directory (``hf:/that/dir`` loads it): a
  word-level tokenizer over a few dozen words wrapped in ``PreTrainedTokenizerFast`` with a
  ChatML-like chat template, and a ``LlamaForCausalLM`` with a couple of small layers.
- :class:`Doors` (``tiny-doors-v0``, registered by :func:`register_doors`): a corridor of doors,
  each painted a color; saying the color of the current door opens it. The optimal policy needs
  one correct action per door, so several steps; a wrong color wastes a turn. Reward 0.5 per door
  opened and 1.0 for the last one. The state key is (door index, color), so GiGPO anchors work.
  Suites ``train`` and ``test`` hold disjoint color sequences.
- :class:`Relay` (``tiny-relay-v0``, :func:`register_relay`): two agents, a scout who sees a door's
  color and an opener who only hears what the scout says; for multi-agent rollouts and per-agent credit.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

from agentgym.env import Environment, tool
from agentgym.types import Task, ToolCall

COLORS = ("red", "green", "blue", "yellow")
SPECIAL = ("[PAD]", "[UNK]", "<|im_start|>", "<|im_end|>")
WORDS = ("system", "user", "assistant", "tool", "tools", "say", "the", "door", "is", "open", "wrong",
         "next", "all", "doors", "are", ".", ":", *COLORS)

# Tools are listed by name only, so prompts stay a few dozen tokens long.
CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|> system tools : {% for t in tools %}{{ t.function.name if t.function is defined "
    "else t.name }} {% endfor %}<|im_end|> {% endif %}"
    "{% for m in messages %}<|im_start|> {{ m.role }} {{ m.content }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def make_tiny_model(path: str | Path, *, layers: int = 2, hidden: int = 64, heads: int = 4, seed: int = 0,
                    extra_words: tuple[str, ...] = ()) -> Path:
    """Write a tiny random Llama model and its tokenizer to ``path`` and return the path."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(dict.fromkeys([*SPECIAL, *WORDS, *extra_words]))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]",
                                        eos_token="<|im_end|>", bos_token=None,
                                        additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         pad_token_id=vocab["[PAD]"], eos_token_id=vocab["<|im_end|>"], bos_token_id=None)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = vocab["<|im_end|>"]
    model.generation_config.pad_token_id = vocab["[PAD]"]
    model.save_pretrained(path)
    return path


class Doors(Environment):
    """Open every door of a corridor by saying each door's color."""

    async def reset(self, task: Task) -> str:
        self.colors: list[str] = list(task.data["colors"])
        self.door = 0
        return f"the door is {self.colors[0]} ."

    @tool
    async def say(self, color: str) -> str:
        """Say a color; the current door opens when it is the door's color.

        Args:
            color: a color word, such as red.
        """
        if color != self.colors[self.door]:
            return f"wrong . the door is {self.colors[self.door]} ."
        self.reach(f"door{self.door}")
        self.door += 1
        if self.door == len(self.colors):
            self.finish(reward=1.0)
            return "all doors are open ."
        self.add_reward(0.5)
        return f"the door is open . the next door is {self.colors[self.door]} ."

    def on_text(self, text: str) -> ToolCall | None:
        """The first word of a plain answer, when it is a color, is the color said."""
        words = text.split()
        return ToolCall(name="say", arguments={"color": words[0]}) if words and words[0] in COLORS else None

    def state_key(self) -> str:
        return f"{self.door}:{self.colors[self.door] if self.door < len(self.colors) else 'done'}"

    def expert_action(self) -> str:
        """The optimal action: say the current door's color (plain text, as the tiny model would)."""
        return self.colors[self.door]

    def snapshot(self) -> Any:
        return {**self._base_snapshot(), "colors": list(self.colors), "door": self.door}

    def restore(self, snapshot: Any) -> None:
        self._base_restore(snapshot)
        self.colors, self.door = list(snapshot["colors"]), snapshot["door"]


def doors_tasks(split: str, *, doors: int = 2, max_turns: int = 4, seed: int = 0) -> list[Task]:
    """All color sequences of length ``doors``, split 3:1 into ``train`` and ``test`` by a seeded shuffle."""
    combos = [list(c) for c in itertools.product(COLORS, repeat=doors)]
    random.Random(seed).shuffle(combos)
    cut = (3 * len(combos)) // 4
    chosen = combos[:cut] if split == "train" else combos[cut:]
    return [Task(id=f"doors-{split}-{'-'.join(c)}", env="tiny-doors-v0", split="test" if split == "test" else "train",
                 prompt="open the doors", data={"colors": c}, max_turns=max_turns)
            for c in chosen]


def register_doors(doors: int = 2, max_turns: int = 4) -> None:
    """Register ``tiny-doors-v0`` with suites ``train`` and ``test`` (idempotent)."""
    from agentgym.registry import register

    register("tiny-doors-v0", Doors, description="Tiny multi-step test environment: say each door's color.",
             suites={"train": lambda: doors_tasks("train", doors=doors, max_turns=max_turns),
                     "test": lambda: doors_tasks("test", doors=doors, max_turns=max_turns)})


class Relay(Environment):
    """Two agents and one door: the scout sees its color and says a color, which is all the opener
    hears; the opener then says a color, and the door opens when it is the door's. One turn each."""

    agents = {"scout": "You see the door. Say its color to the opener.",
              "opener": "Say the color you are told to open the door."}

    async def reset(self, task: Task) -> str:
        self.color, self.said = task.data["color"], ""
        return f"the door is {self.color} ."

    def current_agent(self) -> str:
        return "opener" if self.turn >= 1 else "scout"

    @tool
    async def say(self, color: str) -> str:
        """Say a color: the scout to the opener, the opener to the door.

        Args:
            color: a color word, such as red.
        """
        if self.turn == 1:  # the scout; the observation is what the opener hears
            self.said = color if color in COLORS else ""
            return f"{self.said} ." if self.said else "next ."
        self.finish(reward=1.0 if color == self.color else 0.0)
        return "the door is open ." if color == self.color else "wrong ."

    def on_text(self, text: str) -> ToolCall | None:
        """The first word of a plain answer, when it is a color, is the color said."""
        words = text.split()
        return ToolCall(name="say", arguments={"color": words[0]}) if words and words[0] in COLORS else None

    def state_key(self) -> str:
        return f"scout:{self.color}" if self.turn == 0 else f"opener:{self.said or '-'}"

    def expert_action(self) -> str:
        """The scout says the door's color; the opener repeats what it heard."""
        return self.color if self.turn == 0 else (self.said or COLORS[0])

    def random_action(self, rng: random.Random) -> str:
        """A random color, whoever acts."""
        return rng.choice(COLORS)


def relay_tasks(split: str) -> list[Task]:
    """One task per color and ``split`` (train and test alike: the game is the same, the seeds differ)."""
    return [Task(id=f"relay-{split}-{c}", env="tiny-relay-v0", split="test" if split == "test" else "train",
                 data={"color": c}, max_turns=2) for c in COLORS]


def register_relay() -> None:
    """Register ``tiny-relay-v0`` (two agents: scout and opener) with suites ``train`` and ``test`` (idempotent)."""
    from agentgym.registry import register

    register("tiny-relay-v0", Relay, description="Tiny two-agent test environment: a scout tells an opener a color.",
             suites={"train": lambda: relay_tasks("train"), "test": lambda: relay_tasks("test")})
